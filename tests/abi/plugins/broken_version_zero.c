/*
 * broken_version_zero.so -- a workflow with version 0 (versions start at 1).
 * Expected refusal: 'workflow "abi_version_zero": version must be >= 1'.
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("abi_version_zero", 0, abi_trivial_run)};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_version_zero", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
