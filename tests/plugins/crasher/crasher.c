/*
 * crasher.so -- a test fixture whose step kills its process, for the crash
 * isolation tests (tests/e2e/crash_isolation_test.cc).
 *
 * Workflow "crasher" v1, input {"mode": M, "ledger": "/abs/path"}:
 *   step "prepare"     appends "<run> prepare\n" to the ledger, returns 1
 *   step "charge-card" by mode: "segv" dereferences NULL, "abort" calls
 *                      abort(), "exit" calls exit(3), "hang" sleeps forever,
 *                      anything else returns 2
 *   modes "parallel-segv" and "parallel-hang" run "charge-card" in one
 *   parallel group with step "audit" (which sleeps 400 ms and returns 3),
 *   "charge-card" starting 100 ms after "audit" and then faulting ("segv")
 *   or sleeping forever ("hang")
 * Output: {"charged": true}.
 * Deliberately plain C against plugin.h, with a tiny input scan.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kagzi/plugin.h>

typedef struct crasher_input {
  char mode[16];
  char ledger[512];
  const char *run_id;
} crasher_input;

/* Copies the string value of "key" in json into out (no escapes needed). */
static void find_string(const char *json, size_t len, const char *key, char *out, size_t cap) {
  char pattern[64];
  const char *p;
  const char *end = json + len;
  size_t n = 0;
  out[0] = '\0';
  snprintf(pattern, sizeof pattern, "\"%s\"", key);
  p = strstr(json, pattern);
  if (p == NULL) return;
  p += strlen(pattern);
  while (p < end && (*p == ' ' || *p == ':')) ++p;
  if (p >= end || *p != '"') return;
  ++p;
  while (p < end && *p != '"' && n + 1 < cap) out[n++] = *p++;
  out[n] = '\0';
}

static void append_line(const crasher_input *in, const char *step) {
  char line[128];
  int fd;
  int n;
  if (in->ledger[0] == '\0') return;
  n = snprintf(line, sizeof line, "%s %s\n", in->run_id, step);
  fd = open(in->ledger, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return;
  if (write(fd, line, (size_t)n) != n) { /* best effort */
  }
  close(fd);
}

static kagzi_status prepare_step(void *user, const kagzi_writer *result) {
  append_line((const crasher_input *)user, "prepare");
  return result->write(result, "1", 1);
}

/* A real fault, uninstrumented and opaque to the optimiser: in a sanitized
 * build UndefinedBehaviorSanitizer would report the null store and exit(1)
 * instead, and ASan or TSan would report it as a deadly signal; and a store
 * through a pointer the compiler knows is null is undefined behaviour it may
 * delete (GCC does, under -fsanitize=thread). The test wants the worker
 * killed by SIGSEGV. */
#if defined(__GNUC__)
#define CRASHER_UNSANITIZED __attribute__((noinline, no_sanitize("address", "thread", "undefined")))
#else
#define CRASHER_UNSANITIZED
#endif
static volatile int *volatile nowhere = NULL;
CRASHER_UNSANITIZED static void segfault(void) { *nowhere = 1; }

static int is_parallel(const crasher_input *in) { return strncmp(in->mode, "parallel-", 9) == 0; }

static kagzi_status charge_step(void *user, const kagzi_writer *result) {
  const crasher_input *in = (const crasher_input *)user;
  const char *mode = is_parallel(in) ? in->mode + 9 : in->mode;
  if (is_parallel(in)) usleep(100 * 1000); /* "audit" is the older member */
  append_line(in, "charge-card");
  if (strcmp(mode, "segv") == 0) {
    segfault();
  } else if (strcmp(mode, "abort") == 0) {
    abort();
  } else if (strcmp(mode, "exit") == 0) {
    exit(3);
  } else if (strcmp(mode, "hang") == 0) {
    for (;;) pause();
  }
  return result->write(result, "2", 1);
}

static kagzi_status audit_step(void *user, const kagzi_writer *result) {
  (void)user;
  usleep(400 * 1000);
  return result->write(result, "3", 1);
}

static kagzi_status charge_in_parallel(const kagzi_host *host, kagzi_context *ctx,
                                       crasher_input *in) {
  kagzi_parallel_step steps[2];
  kagzi_status st;
  size_t i;
  memset(steps, 0, sizeof steps);
  steps[0].step_id = "audit";
  steps[0].fn = audit_step;
  steps[1].step_id = "charge-card";
  steps[1].fn = charge_step;
  for (i = 0; i < 2; ++i) {
    steps[i].struct_size = sizeof(kagzi_parallel_step);
    steps[i].user = in;
  }
  if ((st = host->parallel(ctx, steps, 2, 2)) != KAGZI_OK) return st;
  for (i = 0; i < 2; ++i) {
    if (steps[i].status != KAGZI_OK) return steps[i].status;
  }
  return KAGZI_OK;
}

static kagzi_status crasher_run(const kagzi_host *host, kagzi_context *ctx, void *user_data) {
  crasher_input in;
  const char *data = NULL;
  size_t len = 0;
  size_t id_len = 0;
  kagzi_status st;
  (void)user_data;
  memset(&in, 0, sizeof in);
  if ((st = host->get_input(ctx, &data, &len)) != KAGZI_OK) return st;
  if ((st = host->get_run_id(ctx, &in.run_id, &id_len)) != KAGZI_OK) return st;
  find_string(data, len, "mode", in.mode, sizeof in.mode);
  find_string(data, len, "ledger", in.ledger, sizeof in.ledger);
  if ((st = host->step(ctx, "prepare", prepare_step, &in, NULL, NULL)) != KAGZI_OK) return st;
  if (is_parallel(&in)) {
    if ((st = charge_in_parallel(host, ctx, &in)) != KAGZI_OK) return st;
  } else if ((st = host->step(ctx, "charge-card", charge_step, &in, NULL, NULL)) != KAGZI_OK) {
    return st;
  }
  return host->set_output(ctx, "{\"charged\":true}", 16);
}

static const kagzi_workflow crasher_workflows[] = {
    {
        .struct_size = sizeof(kagzi_workflow),
        .abi_major = KAGZI_ABI_MAJOR,
        .abi_minor = KAGZI_ABI_MINOR,
        .name = "crasher",
        .version = 1,
        .run = crasher_run,
    },
};

static const kagzi_plugin crasher_plugin = {
    .struct_size = sizeof(kagzi_plugin),
    .abi_major = KAGZI_ABI_MAJOR,
    .abi_minor = KAGZI_ABI_MINOR,
    .name = "crasher",
    .version = "1.0.0",
    .workflow_count = 1,
    .workflows = crasher_workflows,
};

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_minor;
  return host_abi_major == KAGZI_ABI_MAJOR ? &crasher_plugin : NULL;
}
