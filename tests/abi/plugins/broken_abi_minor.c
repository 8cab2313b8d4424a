/*
 * broken_abi_minor.so -- claims ABI 1.7, newer than the host's 1.0: it may
 * rely on callbacks the host does not have. Expected refusal:
 * "ABI 1.7 is newer than this host's ABI 1.0".
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("abi_minor", 1, abi_trivial_run)};

static const kagzi_plugin plugin = {
    .struct_size = sizeof(kagzi_plugin),
    .abi_major = KAGZI_ABI_MAJOR,
    .abi_minor = 7, /* the defect */
    .name = "broken_abi_minor",
    .version = "1.7.0",
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
