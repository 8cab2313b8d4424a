/*
 * broken_partial.so -- a good first workflow and a bad second one (NULL run
 * function). A plugin is accepted or refused whole: "abi_partial" must not
 * be registered although its own descriptor is fine. Expected refusal:
 * 'workflow "abi_partial_bad" version 1: run function is NULL'.
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {
    ABI_WORKFLOW("abi_partial", 1, abi_trivial_run),
    ABI_WORKFLOW("abi_partial_bad", 1, NULL), /* the defect */
};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_partial", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
