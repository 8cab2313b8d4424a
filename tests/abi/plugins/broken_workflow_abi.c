/*
 * broken_workflow_abi.so -- the plugin descriptor speaks 1.0 but its
 * workflow descriptor claims ABI 2.0. Expected refusal:
 * "workflow #0: ABI 2.0, host speaks 1.x".
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {
    {
        .struct_size = sizeof(kagzi_workflow),
        .abi_major = 2, /* the defect */
        .abi_minor = 0,
        .name = "abi_workflow_abi",
        .version = 1,
        .reserved0 = 0,
        .run = abi_trivial_run,
        .user_data = NULL,
    },
};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_workflow_abi", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
