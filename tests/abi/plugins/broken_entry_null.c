/*
 * broken_entry_null.so -- declines every host: kagzi_plugin_entry returns
 * NULL. Expected refusal: "kagzi_plugin_entry returned NULL".
 */
#include "abi_plugin.h"

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return NULL;
}
