/*
 * broken_struct_size.so -- a plugin descriptor whose struct_size is smaller
 * than ABI 1.0's kagzi_plugin: the host must not read fields past it.
 * Expected refusal: "plugin descriptor struct_size 8 is smaller than".
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("abi_struct_size", 1, abi_trivial_run)};

static const kagzi_plugin plugin = {
    .struct_size = 8, /* the defect */
    .abi_major = KAGZI_ABI_MAJOR,
    .abi_minor = KAGZI_ABI_MINOR,
    .name = "broken_struct_size",
    .version = "1.0.0",
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
  return &plugin;
}
