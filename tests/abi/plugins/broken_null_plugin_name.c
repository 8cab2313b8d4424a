/*
 * broken_null_plugin_name.so -- the plugin descriptor's name is NULL.
 * Expected refusal: "plugin name is NULL".
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {
    ABI_WORKFLOW("abi_null_plugin_name", 1, abi_trivial_run)};
static const kagzi_plugin plugin = ABI_PLUGIN(NULL, workflows, NULL); /* the defect */

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
