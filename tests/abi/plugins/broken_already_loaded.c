/*
 * broken_already_loaded.so -- declares ("abi_good", 1), which abi_good.so
 * (sorting before this file, so loaded first) already provides. Expected
 * refusal: 'workflow "abi_good" version 1 is already loaded from
 * "<dir>/abi_good.so"'. Its other workflow must not be registered either.
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {
    ABI_WORKFLOW("abi_already_loaded_other", 1, abi_trivial_run),
    ABI_WORKFLOW("abi_good", 1, abi_trivial_run), /* the defect */
};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_already_loaded", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
