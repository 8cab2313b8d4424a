/*
 * broken_no_workflows.so -- a valid descriptor that declares no workflows:
 * nothing to serve. Expected refusal: "declares no workflows".
 */
#include "abi_plugin.h"

static const kagzi_plugin plugin = {
    .struct_size = sizeof(kagzi_plugin),
    .abi_major = KAGZI_ABI_MAJOR,
    .abi_minor = KAGZI_ABI_MINOR,
    .name = "broken_no_workflows",
    .version = "1.0.0",
    .workflow_count = 0, /* the defect */
    .reserved0 = 0,
    .workflows = NULL,
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
