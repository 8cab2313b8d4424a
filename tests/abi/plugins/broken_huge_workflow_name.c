/*
 * broken_huge_workflow_name.so -- a workflow name 10 MiB long. The host
 * reads names with strnlen bounded to 256 bytes and must refuse this one
 * without reading the rest: every page of the name but the first and the
 * last (which holds the terminating NUL) is mapped PROT_NONE, so a loader
 * that reads further than the first 4 KiB crashes. Expected refusal: "workflow
 * #0 name is ... longer than the limit of 255 bytes".
 */
#define _DEFAULT_SOURCE
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "abi_plugin.h"

#define NAME_BYTES ((size_t)10 * 1024 * 1024)

static kagzi_workflow workflows[] = {ABI_WORKFLOW("placeholder", 1, abi_trivial_run)};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_huge_workflow_name", workflows, NULL);

/* The name, made once; NULL if the mapping failed (the plugin is then
 * refused as having a NULL name, and the test notices the wrong reason). */
static const char *huge_name(void) {
  static const char *name = NULL;
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *base;
  if (name != NULL) return name;
  base = (char *)mmap(NULL, NAME_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return NULL;
  memset(base, 'n', page);
  memset(base + NAME_BYTES - page, 'n', page);
  base[NAME_BYTES - 1] = '\0';
  if (mprotect(base + page, NAME_BYTES - 2 * page, PROT_NONE) != 0) return NULL;
  name = base;
  return name;
}

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  workflows[0].name = huge_name();
  return &plugin;
}
