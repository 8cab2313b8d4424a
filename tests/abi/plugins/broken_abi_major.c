/*
 * broken_abi_major.so -- built against a (hypothetical) ABI 2.0. The host
 * must refuse it on the major alone, before reading anything else of the
 * descriptor. Expected refusal: "ABI 2.0, host speaks 1.x".
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("abi_major", 1, abi_trivial_run)};

static const kagzi_plugin plugin = {
    .struct_size = sizeof(kagzi_plugin),
    .abi_major = 2, /* the defect */
    .abi_minor = 0,
    .name = "broken_abi_major",
    .version = "2.0.0",
    .workflow_count = 1,
    .reserved0 = 0,
    .workflows = workflows,
    .init = NULL,
    .deinit = NULL,
    .get_extension = NULL,
};

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin; /* ignores the host's version on purpose */
}
