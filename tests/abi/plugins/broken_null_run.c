/*
 * broken_null_run.so -- a workflow without a run function. Expected refusal:
 * 'workflow "abi_null_run" version 1: run function is NULL'.
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("abi_null_run", 1, NULL)};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_null_run", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
