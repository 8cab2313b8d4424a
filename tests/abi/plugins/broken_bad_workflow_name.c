/*
 * broken_bad_workflow_name.so -- a workflow name with a control character
 * (it would forge log lines and break kagzictl's tables). Expected refusal:
 * "workflow #0 name contains a control character (0x0a)".
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("abi_bad\nname", 1, abi_trivial_run)};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_bad_workflow_name", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
