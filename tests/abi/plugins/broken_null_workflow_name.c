/*
 * broken_null_workflow_name.so -- the only workflow's name is NULL.
 * Expected refusal: "workflow #0 name is NULL".
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {ABI_WORKFLOW(NULL, 1, abi_trivial_run)};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_null_workflow_name", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
