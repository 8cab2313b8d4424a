/*
 * broken_non_utf8_plugin_name.so -- a plugin name that is not UTF-8 (it
 * would corrupt log lines and the JSON kagzictl prints). Expected refusal:
 * "plugin name is not valid UTF-8 (at byte 3)".
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("abi_non_utf8", 1, abi_trivial_run)};
static const kagzi_plugin plugin = ABI_PLUGIN("abi\xff\xfe-latin1", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
