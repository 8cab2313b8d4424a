/*
 * abi_runtime.so -- workflows that load fine and misbehave when run.
 *
 * Each workflow breaks one rule of kagzi/plugin.h at run time; the host must
 * fail (or, for the swallowed SUSPEND, keep parked) the run with a message
 * that names the problem, and keep serving other runs. Workflows that need a
 * side-effect file take the run input as one JSON string holding an absolute
 * path without escapes, e.g. "/tmp/x/ledger"; their steps append a line per
 * execution, so the test can count executions.
 *
 *   abi_step_in_step       a step function calls host->step (misuse)
 *   abi_duplicate_step_id  step "same" twice, then returns OK anyway (misuse)
 *   abi_swallow_suspend    ignores sleep()'s SUSPEND on the first invocation,
 *                          calls step after it and returns OK (must stay
 *                          parked, then complete properly on replay)
 *   abi_fake_suspend       returns KAGZI_SUSPEND the host never asked for
 *   abi_bad_output         set_output with invalid JSON, then returns OK
 *   abi_bad_step_json      a step writes invalid JSON as its result
 *   abi_bad_step_id        a step with an empty id
 *   abi_nondeterminism     step "a" then sleep on the first invocation,
 *                          step "b" first on replay
 *   abi_permanent          returns KAGZI_ERR_PERMANENT with set_error
 *   abi_unknown_status     returns status 42
 * No state is shared between runs.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "abi_plugin.h"

#define ABI_MAX_PATH 1024

/* Copies the run input, a JSON string without escapes, into path. */
static int read_path_input(const kagzi_host *host, kagzi_context *ctx, char *path, size_t cap) {
  const char *input = NULL;
  size_t len = 0;
  if (host->get_input(ctx, &input, &len) != KAGZI_OK) return 0;
  if (len < 3 || input[0] != '"' || input[len - 1] != '"' || len - 2 >= cap) return 0;
  memcpy(path, input + 1, len - 2);
  path[len - 2] = '\0';
  return memchr(path, '\\', len - 2) == NULL && path[0] == '/';
}

static kagzi_status refuse_input(const kagzi_host *host, kagzi_context *ctx) {
  static const char message[] = "input must be a JSON string holding an absolute path";
  host->set_error(ctx, message, sizeof message - 1);
  return KAGZI_ERR_PERMANENT;
}

static kagzi_status set_text_output(const kagzi_host *host, kagzi_context *ctx, const char *json) {
  return host->set_output(ctx, json, strlen(json));
}

/* Step arguments for append_line_step: appends "<line>\n" to path. */
typedef struct append_args {
  const char *path;
  const char *line;
} append_args;

static kagzi_status append_line_step(void *user, const kagzi_writer *result) {
  const append_args *args = (const append_args *)user;
  FILE *f = fopen(args->path, "a");
  int ok;
  if (f == NULL) {
    static const char message[] = "cannot open the ledger file";
    result->write(result, message, sizeof message - 1);
    return KAGZI_ERR_RETRYABLE;
  }
  ok = fprintf(f, "%s\n", args->line) > 0;
  ok = fclose(f) == 0 && ok;
  if (!ok) return KAGZI_ERR_RETRYABLE;
  return result->write(result, "\"written\"", 9);
}

static kagzi_status null_step(void *user, const kagzi_writer *result) {
  (void)user;
  (void)result;
  return KAGZI_OK; /* nothing written: the result is null */
}

/* Passes a failed host call on, with its message as the run's error. */
static kagzi_status pass_on(const kagzi_host *host, kagzi_context *ctx, kagzi_status status,
                            const char *out, size_t out_len) {
  if ((status == KAGZI_ERR_RETRYABLE || status == KAGZI_ERR_PERMANENT) && out != NULL) {
    host->set_error(ctx, out, out_len);
  }
  return status;
}

/* ------------------------------------------------------------------------ */
/* abi_step_in_step                                                         */
/* ------------------------------------------------------------------------ */

typedef struct nested_args {
  const kagzi_host *host;
  kagzi_context *ctx;
} nested_args;

static kagzi_status outer_step(void *user, const kagzi_writer *result) {
  nested_args *args = (nested_args *)user;
  /* The misuse: the context is off limits inside a step function. */
  (void)args->host->step(args->ctx, "inner", null_step, NULL, NULL, NULL);
  return result->write(result, "\"outer done\"", 12);
}

static kagzi_status step_in_step_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  nested_args args = {host, ctx};
  kagzi_status status;
  (void)user;
  status = host->step(ctx, "outer", outer_step, &args, NULL, NULL);
  if (status != KAGZI_OK) return status;
  return set_text_output(host, ctx, "\"nested step accepted\"");
}

/* ------------------------------------------------------------------------ */
/* abi_duplicate_step_id                                                    */
/* ------------------------------------------------------------------------ */

static kagzi_status duplicate_step_id_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  (void)user;
  (void)host->step(ctx, "same", null_step, NULL, NULL, NULL);
  (void)host->step(ctx, "same", null_step, NULL, NULL, NULL); /* the misuse */
  /* Ignores the refusal and claims success; the host fails the run anyway. */
  set_text_output(host, ctx, "\"duplicate accepted\"");
  return KAGZI_OK;
}

/* ------------------------------------------------------------------------ */
/* abi_swallow_suspend                                                      */
/* ------------------------------------------------------------------------ */

static kagzi_status swallow_suspend_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  char path[ABI_MAX_PATH];
  append_args before = {path, "before"};
  append_args after = {path, "after"};
  const char *out = NULL;
  size_t out_len = 0;
  kagzi_status slept;
  kagzi_status status;
  (void)user;
  if (!read_path_input(host, ctx, path, sizeof path)) return refuse_input(host, ctx);

  status = host->step(ctx, "before", append_line_step, &before, &out, &out_len);
  if (status != KAGZI_OK) return pass_on(host, ctx, status, out, out_len);
  slept = host->sleep(ctx, "nap", 4000);
  if (slept != KAGZI_OK && slept != KAGZI_SUSPEND) return slept;

  /* On the first invocation slept is KAGZI_SUSPEND and everything below is
   * the misbehaviour: the host must refuse the step and not commit the OK. */
  status = host->step(ctx, "after", append_line_step, &after, &out, &out_len);
  if (slept == KAGZI_SUSPEND) {
    char line[96];
    int n = snprintf(line, sizeof line, "abi_swallow_suspend: step after KAGZI_SUSPEND returned %d",
                     (int)status);
    host->log(ctx, KAGZI_LOG_WARN, line, n > 0 ? (size_t)n : 0);
    set_text_output(host, ctx, "\"swallowed\"");
    return KAGZI_OK; /* the lie */
  }
  if (status != KAGZI_OK) return pass_on(host, ctx, status, out, out_len);
  return set_text_output(host, ctx, "{\"slept\":true}");
}

/* ------------------------------------------------------------------------ */
/* abi_fake_suspend, abi_bad_output, abi_unknown_status, abi_permanent      */
/* ------------------------------------------------------------------------ */

static kagzi_status fake_suspend_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  (void)host;
  (void)ctx;
  (void)user;
  return KAGZI_SUSPEND; /* no host call ever returned it */
}

static kagzi_status bad_output_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  static const char bad[] = "{\"unterminated\": ";
  (void)user;
  (void)host->set_output(ctx, bad, sizeof bad - 1); /* refused: KAGZI_ERR_MISUSE */
  return KAGZI_OK;
}

static kagzi_status unknown_status_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  (void)host;
  (void)ctx;
  (void)user;
  return 42;
}

static kagzi_status permanent_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  static const char message[] = "abi_permanent: the card was declined";
  (void)user;
  host->set_error(ctx, message, sizeof message - 1);
  return KAGZI_ERR_PERMANENT;
}

/* ------------------------------------------------------------------------ */
/* abi_bad_step_json, abi_bad_step_id                                       */
/* ------------------------------------------------------------------------ */

static kagzi_status not_json_step(void *user, const kagzi_writer *result) {
  static const char text[] = "this is not JSON";
  (void)user;
  return result->write(result, text, sizeof text - 1);
}

static kagzi_status bad_step_json_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  const char *out = NULL;
  size_t out_len = 0;
  kagzi_status status;
  (void)user;
  status = host->step(ctx, "broken", not_json_step, NULL, &out, &out_len);
  if (status != KAGZI_OK) return pass_on(host, ctx, status, out, out_len);
  return set_text_output(host, ctx, "\"invalid step result accepted\"");
}

static kagzi_status bad_step_id_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  kagzi_status status;
  (void)user;
  status = host->step(ctx, "", null_step, NULL, NULL, NULL);
  if (status != KAGZI_OK) return status;
  return set_text_output(host, ctx, "\"empty step id accepted\"");
}

/* ------------------------------------------------------------------------ */
/* abi_nondeterminism                                                       */
/* ------------------------------------------------------------------------ */

static kagzi_status nondeterminism_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  char path[ABI_MAX_PATH];
  append_args a = {path, "a"};
  append_args b = {path, "b"};
  struct stat st;
  kagzi_status status;
  (void)user;
  if (!read_path_input(host, ctx, path, sizeof path)) return refuse_input(host, ctx);

  /* The non-determinism: the decision depends on the outside world (the
   * file step "a" creates), not on the input and the journal. */
  if (stat(path, &st) != 0) {
    status = host->step(ctx, "a", append_line_step, &a, NULL, NULL);
    if (status != KAGZI_OK) return status;
    status = host->sleep(ctx, "nap", 100);
    if (status != KAGZI_OK) return status;
  } else {
    status = host->step(ctx, "b", append_line_step, &b, NULL, NULL);
    if (status != KAGZI_OK) return status;
  }
  return set_text_output(host, ctx, "\"nondeterminism accepted\"");
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                               */
/* ------------------------------------------------------------------------ */

static const kagzi_workflow workflows[] = {
    ABI_WORKFLOW("abi_step_in_step", 1, step_in_step_run),
    ABI_WORKFLOW("abi_duplicate_step_id", 1, duplicate_step_id_run),
    ABI_WORKFLOW("abi_swallow_suspend", 1, swallow_suspend_run),
    ABI_WORKFLOW("abi_fake_suspend", 1, fake_suspend_run),
    ABI_WORKFLOW("abi_bad_output", 1, bad_output_run),
    ABI_WORKFLOW("abi_bad_step_json", 1, bad_step_json_run),
    ABI_WORKFLOW("abi_bad_step_id", 1, bad_step_id_run),
    ABI_WORKFLOW("abi_nondeterminism", 1, nondeterminism_run),
    ABI_WORKFLOW("abi_permanent", 1, permanent_run),
    ABI_WORKFLOW("abi_unknown_status", 1, unknown_status_run),
};
static const kagzi_plugin plugin = ABI_PLUGIN("abi_runtime", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_minor;
  return host_abi_major == KAGZI_ABI_MAJOR ? &plugin : NULL;
}
