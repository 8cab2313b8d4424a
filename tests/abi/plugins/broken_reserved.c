/*
 * broken_reserved.so -- a workflow descriptor whose reserved0 field, which
 * ABI 1.0 says must be 0, is set (a later minor may give it a meaning).
 * Expected refusal: 'workflow "abi_reserved": reserved0 is not 0'.
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {{.struct_size = sizeof(kagzi_workflow),
                                            .abi_major = KAGZI_ABI_MAJOR,
                                            .abi_minor = KAGZI_ABI_MINOR,
                                            .name = "abi_reserved",
                                            .version = 1,
                                            .reserved0 = 7,
                                            .run = abi_trivial_run,
                                            .user_data = NULL}};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_reserved", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
