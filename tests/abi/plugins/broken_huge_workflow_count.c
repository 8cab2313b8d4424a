/*
 * broken_huge_workflow_count.so -- declares 4294967295 workflows over an
 * array of one. A count larger than its array cannot be detected; a count
 * over the host's limit must be refused before the array is read. Expected
 * refusal: "declares 4294967295 workflows, more than the limit of 4096".
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("abi_huge_count", 1, abi_trivial_run)};
static const kagzi_plugin plugin = {.struct_size = sizeof(kagzi_plugin),
                                    .abi_major = KAGZI_ABI_MAJOR,
                                    .abi_minor = KAGZI_ABI_MINOR,
                                    .name = "broken_huge_workflow_count",
                                    .version = "0.0.1-abi-test",
                                    .workflow_count = 0xFFFFFFFFu,
                                    .reserved0 = 0,
                                    .workflows = workflows,
                                    .init = NULL,
                                    .deinit = NULL,
                                    .get_extension = NULL};

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
