/*
 * broken_version_huge.so -- a workflow version that does not fit the
 * database's integer version column (the descriptor field is uint32_t; the
 * registry and the runs table hold a signed 32-bit int; the host once
 * registered it as version -1). Expected refusal: 'workflow
 * "abi_version_huge": version 4294967295 is larger than the maximum 2147483647'.
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {
    ABI_WORKFLOW("abi_version_huge", UINT32_C(4294967295), abi_trivial_run)};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_version_huge", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
