/*
 * tests/plugins/abi10/abi10.c -- fixture: a plugin built against the ABI 1.0
 * layout, to prove that a 1.1 host still loads and runs 1.0 plugins unchanged.
 *
 * It does not include <kagzi/plugin.h>: it carries its own copies of the 1.0
 * declarations (kagzi10_*), as a plugin compiled with the 1.0 header would
 * have them. What matters to the host:
 *   - kagzi_plugin.abi_minor = 0 and kagzi_workflow.abi_minor = 0;
 *   - kagzi_workflow.struct_size = 40 (1.0 had no timeout_ms), so the host must
 *     step through the workflow array by 40 bytes, not by its own 48: the
 *     array holds TWO workflows, and a host using its own stride would read
 *     the second one from the middle of the first;
 *   - the host table is read only as far as 1.0 defined it (get_run_id).
 *
 * Workflows (version 1 each, one step "work" through host->step):
 *   abi10_a  output {"wf":"a"}
 *   abi10_b  output {"wf":"b"}
 */
#include <stddef.h>
#include <stdint.h>

/* ---- the ABI 1.0 declarations (frozen copy of plugin.h 1.0) ---- */

typedef int32_t kagzi10_status;
#define KAGZI10_OK INT32_C(0)
#define KAGZI10_ERR_RETRYABLE INT32_C(2)
#define KAGZI10_ERR_PERMANENT INT32_C(3)

typedef struct kagzi10_context kagzi10_context;

typedef struct kagzi10_writer {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  void *host_data;
  kagzi10_status (*write)(const struct kagzi10_writer *writer, const char *data, size_t len);
} kagzi10_writer;

typedef kagzi10_status (*kagzi10_step_fn)(void *user, const kagzi10_writer *result);

/* The 1.0 host table: it ends at get_run_id (72 bytes on LP64). */
typedef struct kagzi10_host {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  kagzi10_status (*get_input)(kagzi10_context *ctx, const char **data, size_t *len);
  kagzi10_status (*step)(kagzi10_context *ctx, const char *step_id, kagzi10_step_fn fn, void *user,
                         const char **out, size_t *out_len);
  kagzi10_status (*sleep)(kagzi10_context *ctx, const char *step_id, uint64_t duration_ms);
  kagzi10_status (*set_output)(kagzi10_context *ctx, const char *json, size_t len);
  kagzi10_status (*set_error)(kagzi10_context *ctx, const char *message, size_t len);
  void (*log)(kagzi10_context *ctx, int32_t level, const char *message, size_t len);
  const void *(*get_extension)(kagzi10_context *ctx, const char *id);
  kagzi10_status (*get_run_id)(kagzi10_context *ctx, const char **id, size_t *len);
} kagzi10_host;

typedef kagzi10_status (*kagzi10_run_fn)(const kagzi10_host *host, kagzi10_context *ctx,
                                         void *user_data);

/* The 1.0 workflow descriptor: 40 bytes on LP64, no timeout_ms. */
typedef struct kagzi10_workflow {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  const char *name;
  uint32_t version;
  uint32_t reserved0;
  kagzi10_run_fn run;
  void *user_data;
} kagzi10_workflow;

typedef struct kagzi10_plugin {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  const char *name;
  const char *version;
  uint32_t workflow_count;
  uint32_t reserved0;
  const kagzi10_workflow *workflows;
  kagzi10_status (*init)(void);
  void (*deinit)(void);
  const void *(*get_extension)(const char *id);
} kagzi10_plugin;

#if defined(__LP64__) || defined(_LP64)
_Static_assert(sizeof(kagzi10_host) == 72, "the ABI 1.0 host table is 72 bytes");
_Static_assert(sizeof(kagzi10_workflow) == 40, "the ABI 1.0 workflow descriptor is 40 bytes");
_Static_assert(sizeof(kagzi10_plugin) == 64, "the ABI 1.0 plugin descriptor is 64 bytes");
#endif

/* ---- the workflows ---- */

typedef struct {
  const char *json;
  size_t len;
} result_text;

static kagzi10_status write_result(void *user, const kagzi10_writer *writer) {
  const result_text *result = (const result_text *)user;
  return writer->write(writer, result->json, result->len) == KAGZI10_OK ? KAGZI10_OK
                                                                        : KAGZI10_ERR_PERMANENT;
}

/* One step "work" whose result is the run's output. */
static kagzi10_status run_one_step(const kagzi10_host *host, kagzi10_context *ctx,
                                   const result_text *result) {
  const char *out = NULL;
  size_t out_len = 0;
  kagzi10_status status = host->step(ctx, "work", write_result, (void *)result, &out, &out_len);
  switch (status) {
    case KAGZI10_OK:
      return host->set_output(ctx, out, out_len);
    case KAGZI10_ERR_RETRYABLE:
    case KAGZI10_ERR_PERMANENT:
      host->set_error(ctx, out, out_len);
      return status;
    default: /* SUSPEND, or the host failed the run: stop now */
      return status;
  }
}

static kagzi10_status run_a(const kagzi10_host *host, kagzi10_context *ctx, void *user_data) {
  static const result_text result = {"{\"wf\":\"a\"}", 10};
  (void)user_data;
  return run_one_step(host, ctx, &result);
}

static kagzi10_status run_b(const kagzi10_host *host, kagzi10_context *ctx, void *user_data) {
  static const result_text result = {"{\"wf\":\"b\"}", 10};
  (void)user_data;
  return run_one_step(host, ctx, &result);
}

static const kagzi10_workflow workflows[] = {
    {sizeof(kagzi10_workflow), 1, 0, "abi10_a", 1, 0, run_a, NULL},
    {sizeof(kagzi10_workflow), 1, 0, "abi10_b", 1, 0, run_b, NULL},
};

static const kagzi10_plugin plugin = {
    sizeof(kagzi10_plugin), 1, 0, "abi10", "1.0.0", 2, 0, workflows, NULL, NULL, NULL};

/* The entry point, declared as plugin.h 1.0 declared it. The host reads the
 * result as its own kagzi_plugin, whose layout is unchanged in 1.1. */
__attribute__((visibility("default"))) const kagzi10_plugin *kagzi_plugin_entry(
    uint16_t host_abi_major, uint16_t host_abi_minor);
__attribute__((visibility("default"))) const kagzi10_plugin *kagzi_plugin_entry(
    uint16_t host_abi_major, uint16_t host_abi_minor) {
  (void)host_abi_minor; /* any 1.x host runs a 1.0 plugin */
  return host_abi_major == 1 ? &plugin : NULL;
}
