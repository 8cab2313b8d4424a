/*
 * broken_undefined_symbol.so -- an ELF object that dlopen(RTLD_NOW) cannot
 * load: it calls a function nobody defines. It is linked without -z defs
 * (which would have caught it at build time), as a careless build would be.
 * Expected refusal: "dlopen failed: ... undefined symbol".
 */
#include "abi_plugin.h"

void abi_symbol_nobody_defines(void);

static kagzi_status needs_missing_symbol(const kagzi_host *host, kagzi_context *ctx,
                                         void *user_data) {
  (void)host;
  (void)ctx;
  (void)user_data;
  abi_symbol_nobody_defines();
  return KAGZI_OK;
}

static const kagzi_workflow workflows[] = {
    ABI_WORKFLOW("abi_undefined_symbol", 1, needs_missing_symbol)};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_undefined_symbol", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
