/*
 * broken_null_workflow_array.so -- declares two workflows but gives no
 * array: a host that trusted workflow_count would read through NULL.
 * Expected refusal: "declares 2 workflows but the workflow array is NULL".
 */
#include "abi_plugin.h"

static const kagzi_plugin plugin = {
    .struct_size = sizeof(kagzi_plugin),
    .abi_major = KAGZI_ABI_MAJOR,
    .abi_minor = KAGZI_ABI_MINOR,
    .name = "broken_null_workflow_array",
    .version = "1.0.0",
    .workflow_count = 2,
    .reserved0 = 0,
    .workflows = NULL, /* the defect */
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
