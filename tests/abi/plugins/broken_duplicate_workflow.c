/*
 * broken_duplicate_workflow.so -- declares ("abi_duplicate", 3) twice. Two
 * run functions for one (workflow, version) would make replay ambiguous.
 * Expected refusal: 'workflow "abi_duplicate" version 3 is declared twice'.
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {
    ABI_WORKFLOW("abi_duplicate", 2, abi_trivial_run),
    ABI_WORKFLOW("abi_duplicate", 3, abi_trivial_run),
    ABI_WORKFLOW("abi_duplicate", 3, abi_trivial_run), /* the defect */
};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_duplicate_workflow", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
