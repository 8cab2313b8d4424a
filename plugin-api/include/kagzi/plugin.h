/*
 * kagzi/plugin.h -- the Kagzi workflow plugin ABI, version 1.1.
 *
 * This header is the specification. A workflow plugin is a shared object
 * that exports exactly one symbol, kagzi_plugin_entry(), which returns a
 * descriptor listing the workflows the plugin provides. The host (kagzid)
 * calls a workflow's run() function with a table of host callbacks; the two
 * at the heart of it are step() (run a piece of work once, record its result,
 * never run it again for this run) and sleep() (park the run durably; it is
 * woken later, possibly on another daemon).
 *
 * The header is C11, has no dependencies beyond <stddef.h> and <stdint.h>,
 * and compiles as C11 and as every C++ standard from C++11 on.
 *
 * ---------------------------------------------------------------------------
 * EXECUTION MODEL: REPLAY
 * ---------------------------------------------------------------------------
 * Every time a daemon claims a run it calls the workflow's run() from the
 * top with the run's input. step(id) looks id up in the run's journal:
 * recorded -> the recorded result is returned and the step function is NOT
 * called; not recorded -> the step function is called, its result recorded
 * under the run's lease, and returned. So:
 *   - workflow code outside steps must be deterministic: given the same input
 *     and the same step results it must make the same calls in the same order;
 *   - step ids must be unique within a run;
 *   - steps are at-least-once: a daemon can die after a step's work and
 *     before its result is recorded, and the step then runs again. A step
 *     whose result is recorded never runs again for that run.
 * A call made in a different order than the journal recorded, or with a
 * different kind (step vs sleep) for a recorded id, is a non-determinism
 * error (KAGZI_ERR_NONDETERMINISM) and fails the run.
 *
 * ---------------------------------------------------------------------------
 * VERSIONING
 * ---------------------------------------------------------------------------
 * Every struct starts with struct_size and the ABI major/minor it was built
 * against. The major changes only on an incompatible change; a host refuses a
 * plugin whose major differs from its own. The minor grows when fields or
 * callbacks are appended; a host refuses a plugin whose minor is newer than
 * its own, and accepts any older minor (it reads struct_size to know which
 * appended fields exist). Larger capabilities may first arrive as extensions
 * named by a versioned string id such as "kagzi.events/1" (get_extension).
 * Status codes are fixed-width integers (int32_t); C enum types never appear
 * in any struct layout.
 *
 * ---------------------------------------------------------------------------
 * MEMORY OWNERSHIP
 * ---------------------------------------------------------------------------
 * - What the host hands the plugin (the host table, the context, input and
 *   step results returned through out-parameters) is owned by the host and
 *   is valid until run() returns, unless a function below says otherwise.
 *   The plugin must not free or modify it.
 * - What the plugin hands the host (descriptors, names, JSON text, error
 *   messages) is copied by the host before the call returns, except the
 *   descriptor returned by kagzi_plugin_entry(), its workflow array and the
 *   strings they point to, which must stay valid and unchanged for the life
 *   of the process (static storage is the normal choice). The host never
 *   calls dlclose().
 * - Neither side frees the other's memory.
 *
 * ---------------------------------------------------------------------------
 * THREADS
 * ---------------------------------------------------------------------------
 * - kagzi_plugin_entry(), init() and deinit() are called once each, on the
 *   host's main thread, before (resp. after) any run() call.
 * - run() is called on a host executor thread. Different runs (of the same
 *   or different workflows) run concurrently on different threads, so any
 *   state a workflow shares between runs must be thread-safe.
 * - A kagzi_context belongs to one run() invocation. Every host call that
 *   takes it must be made on the thread that called run(), while run() is
 *   executing, and never from inside a step function (KAGZI_ERR_MISUSE).
 * - A step function is called synchronously, on the thread that called
 *   step(), before step() returns.
 *
 * ---------------------------------------------------------------------------
 * STRINGS
 * ---------------------------------------------------------------------------
 * Names and step ids are NUL-terminated UTF-8, 1..KAGZI_MAX_NAME_LEN bytes,
 * without control characters. Payloads (input, step results, outputs) are
 * JSON text passed as pointer + length; they need not be NUL-terminated when
 * passed to the host, and are always NUL-terminated when passed by the host
 * (the terminator is not counted in the length).
 */
#ifndef KAGZI_PLUGIN_H
#define KAGZI_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version this header describes. */
#define KAGZI_ABI_MAJOR 1
#define KAGZI_ABI_MINOR 1

/* Longest workflow name, plugin name or step id, in bytes. */
#define KAGZI_MAX_NAME_LEN 255

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */
/* ------------------------------------------------------------------------ */

typedef int32_t kagzi_status;

/* Success. */
#define KAGZI_OK INT32_C(0)
/* The run is parked (sleeping), its lease was lost, or the daemon is
 * draining: return KAGZI_SUSPEND from run() at once without calling the
 * context again. Only the host produces it; a workflow passes it through. */
#define KAGZI_SUSPEND INT32_C(1)
/* A failure that may succeed if tried again (network, timeout). */
#define KAGZI_ERR_RETRYABLE INT32_C(2)
/* A failure that will not succeed if tried again (bad input, refused). */
#define KAGZI_ERR_PERMANENT INT32_C(3)
/* Host only: the workflow made a call that does not match its journal. */
#define KAGZI_ERR_NONDETERMINISM INT32_C(4)
/* Host only: the call broke a rule of this ABI (context used after SUSPEND
 * or from inside a step, duplicate or invalid step id, invalid JSON). */
#define KAGZI_ERR_MISUSE INT32_C(5)
/* ABI 1.1. A wait ended by its timeout (wait_for_event). */
#define KAGZI_ERR_TIMEOUT INT32_C(6)
/* ABI 1.1. This run was cancelled (kagzictl cancel). Returned once, by the
 * first journaled call (step, sleep, wait, child call, parallel, helper)
 * after the host learns of it; later calls work again so the workflow may
 * run cleanup steps. However run() then returns, the run ends CANCELLED.
 * A run that is parked or pending when cancelled ends CANCELLED at once,
 * without being invoked again. */
#define KAGZI_ERR_CANCELLED INT32_C(7)

/* Log levels for kagzi_host.log. */
#define KAGZI_LOG_DEBUG INT32_C(0)
#define KAGZI_LOG_INFO INT32_C(1)
#define KAGZI_LOG_WARN INT32_C(2)
#define KAGZI_LOG_ERROR INT32_C(3)

/* ------------------------------------------------------------------------ */
/* Opaque host objects                                                      */
/* ------------------------------------------------------------------------ */

/* One run() invocation. Owned by the host, valid until run() returns. */
typedef struct kagzi_context kagzi_context;

/* ------------------------------------------------------------------------ */
/* Step result writer                                                       */
/* ------------------------------------------------------------------------ */

/* Where a step function writes its result. Owned by the host, valid only
 * during the step function call. On KAGZI_OK the bytes written are the
 * step's result and must form one JSON value (nothing written means
 * "null"). On an error status they are the error message (UTF-8 text). */
typedef struct kagzi_writer {
  uint32_t struct_size; /* sizeof(kagzi_writer) as the host built it */
  uint16_t abi_major;
  uint16_t abi_minor;
  void *host_data; /* host-private; the plugin must not touch it */
  /* Appends len bytes; the host copies them. May be called several times.
   * Returns KAGZI_OK, or KAGZI_ERR_PERMANENT when the result grows past the
   * host's size limit. Thread: the step function's thread. */
  kagzi_status (*write)(const struct kagzi_writer *writer, const char *data, size_t len);
} kagzi_writer;

/* A step function: does the step's work, writes its result or error
 * message to result, returns KAGZI_OK, KAGZI_ERR_RETRYABLE or
 * KAGZI_ERR_PERMANENT. Must not call back into the context. */
typedef kagzi_status (*kagzi_step_fn)(void *user, const kagzi_writer *result);

/* ------------------------------------------------------------------------ */
/* ABI 1.1: retry policies and parallel steps                                */
/* ------------------------------------------------------------------------ */

/* How a step whose function returns KAGZI_ERR_RETRYABLE is retried. Each
 * failed attempt is recorded (attempt count and error) and the run is parked
 * until the next attempt is due: no executor is held while it waits. After
 * max_attempts, or at once on KAGZI_ERR_PERMANENT, the step's failure is
 * recorded and returned to the workflow. Delay before attempt n+1:
 *   min(initial_interval_ms * multiplier^(n-1), max_interval_ms)
 * scaled by a random factor in [1 - jitter, 1 + jitter]. Copied by the host. */
typedef struct kagzi_retry_policy {
  uint32_t struct_size;         /* sizeof(kagzi_retry_policy) */
  uint32_t max_attempts;        /* >= 1; 1 means no retry */
  uint64_t initial_interval_ms; /* >= 1 */
  uint64_t max_interval_ms;     /* >= initial_interval_ms */
  double multiplier;            /* >= 1.0 */
  double jitter;                /* 0.0 .. 1.0 */
} kagzi_retry_policy;

/* One step of a parallel group (kagzi_host.parallel). The plugin fills the
 * inputs; the host fills the outputs before parallel() returns. */
typedef struct kagzi_parallel_step {
  uint32_t struct_size; /* sizeof(kagzi_parallel_step) */
  uint32_t reserved0;   /* must be 0 */
  /* inputs */
  const char *step_id;
  kagzi_step_fn fn;
  void *user;
  const kagzi_retry_policy *policy; /* NULL: the daemon's default policy */
  /* outputs: like step()'s return value and out-parameters */
  kagzi_status status;
  uint32_t reserved1; /* set to 0 by the plugin; the host ignores it */
  const char *out;    /* valid until run() returns */
  size_t out_len;
} kagzi_parallel_step;

/* ------------------------------------------------------------------------ */
/* Host function table (passed to run())                                    */
/* ------------------------------------------------------------------------ */

/* Owned by the host, valid until run() returns (in practice: for the life of
 * the process). New callbacks are appended at the end in later minors;
 * check struct_size before using a callback newer than the minor you need. */
typedef struct kagzi_host {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;

  /* The run's input as JSON text. *data stays valid until run() returns.
   * Returns KAGZI_OK, or KAGZI_ERR_MISUSE on a bad context. */
  kagzi_status (*get_input)(kagzi_context *ctx, const char **data, size_t *len);

  /* Runs fn(user, writer) once for this run and step_id, or returns the
   * recorded outcome without calling fn.
   * Returns:
   *   KAGZI_OK: *out and *out_len hold the step's JSON result.
   *   KAGZI_ERR_RETRYABLE / KAGZI_ERR_PERMANENT: the step failed (now or in
   *     an earlier invocation, as recorded); *out and *out_len hold its message.
   *     The workflow may handle the failure and continue.
   *   KAGZI_SUSPEND: stop now; return KAGZI_SUSPEND from run().
   *   KAGZI_ERR_NONDETERMINISM / KAGZI_ERR_MISUSE: *out holds the reason; the
   *     run will fail whatever run() returns.
   * *out stays valid until run() returns. out and out_len may be NULL. */
  kagzi_status (*step)(kagzi_context *ctx, const char *step_id, kagzi_step_fn fn, void *user,
                       const char **out, size_t *out_len);

  /* Durable sleep. The first time, records a wake time duration_ms from now
   * (the database clock) and returns KAGZI_SUSPEND: the run is parked,
   * holding no thread, connection or lease, and is replayed on any daemon
   * once the wake time passes, when the same call returns KAGZI_OK.
   * Also returns KAGZI_ERR_NONDETERMINISM / KAGZI_ERR_MISUSE like step(). */
  kagzi_status (*sleep)(kagzi_context *ctx, const char *step_id, uint64_t duration_ms);

  /* Sets the run's output (one JSON value; copied). The last call wins;
   * without a call the output is null. Returns KAGZI_ERR_MISUSE for invalid
   * JSON. Takes effect only if run() returns KAGZI_OK. */
  kagzi_status (*set_output)(kagzi_context *ctx, const char *json, size_t len);

  /* Sets the run's error message (UTF-8, copied). Takes effect if run()
   * returns KAGZI_ERR_RETRYABLE or KAGZI_ERR_PERMANENT. */
  kagzi_status (*set_error)(kagzi_context *ctx, const char *message, size_t len);

  /* Logs a line tagged with the run id (KAGZI_LOG_*; copied). Allowed from
   * inside step functions too. */
  void (*log)(kagzi_context *ctx, int32_t level, const char *message, size_t len);

  /* Returns the host extension named id (e.g. "kagzi.events/1"), or NULL if
   * the host does not provide it. The pointer is valid for the life of the
   * process. ABI 1.0 hosts provide none. */
  const void *(*get_extension)(kagzi_context *ctx, const char *id);

  /* The run's id (a UUID in text form, NUL-terminated), stable across
   * replays and daemons: use it to make side effects idempotent (e.g. as an
   * idempotency key towards a payment API). *id stays valid until run()
   * returns. Allowed from inside step functions too. */
  kagzi_status (*get_run_id)(kagzi_context *ctx, const char **id, size_t *len);

  /* ---- ABI 1.1: present when abi_minor >= 1 (a 1.0 host's table ends at
   *      get_run_id; a plugin built for 1.1 that may meet a 1.0 host checks
   *      abi_minor before calling these) ------------------------------- */

  /* step() with an explicit retry policy (NULL: the daemon's default, which
   * plain step() also uses). Besides step()'s results it may return
   * KAGZI_SUSPEND while a retry is pending (the run is parked until then). */
  kagzi_status (*step_with_policy)(kagzi_context *ctx, const char *step_id, kagzi_step_fn fn,
                                   void *user, const kagzi_retry_policy *policy, const char **out,
                                   size_t *out_len);

  /* Waits for an event named event_name sent to this run (kagzictl signal).
   * Events sent before the wait are kept; each is consumed by one wait, in
   * the order sent. Parks the run (KAGZI_SUSPEND) until one arrives or
   * timeout_ms passes (timeout_ms < 0: no timeout). On replay returns the
   * recorded outcome: KAGZI_OK with the event's JSON payload in *payload, or
   * KAGZI_ERR_TIMEOUT. */
  kagzi_status (*wait_for_event)(kagzi_context *ctx, const char *step_id, const char *event_name,
                                 int64_t timeout_ms, const char **payload, size_t *payload_len);

  /* Starts a child run of `workflow` with the given JSON input (once: replay
   * never starts a second child) and parks this run until the child
   * finishes. Returns KAGZI_OK with the child's output, or
   * KAGZI_ERR_PERMANENT with the child's error (also when the child was
   * cancelled; KAGZI_ERR_CANCELLED always means this run was cancelled).
   * Cancelling a run cancels its children. */
  kagzi_status (*call_child)(kagzi_context *ctx, const char *step_id, const char *workflow,
                             const char *input_json, size_t input_len, const char **out,
                             size_t *out_len);

  /* Runs the unfinished steps of `steps` at the same time, at most
   * max_concurrency at once (0: the host's limit), each memoized on its own,
   * and returns when all have an outcome (in each element's status/out).
   * Step functions run on host worker threads, concurrently: they must not
   * share unsynchronized state. Returns KAGZI_OK when every element has its
   * outcome, KAGZI_SUSPEND when the run must park (a retry is pending, the
   * lease was lost, the daemon is draining), KAGZI_ERR_CANCELLED (every
   * unfinished element then has that status), or like step() on misuse.
   * count may be 0 (returns KAGZI_OK). */
  kagzi_status (*parallel)(kagzi_context *ctx, kagzi_parallel_step *steps, size_t count,
                           uint32_t max_concurrency);

  /* Deterministic helpers: the wall-clock time (Unix milliseconds) and a
   * random 64-bit number, recorded under step_id on first use so that every
   * replay sees the same value. */
  kagzi_status (*now_ms)(kagzi_context *ctx, const char *step_id, int64_t *unix_ms);
  kagzi_status (*random_u64)(kagzi_context *ctx, const char *step_id, uint64_t *value);
} kagzi_host;

/* ------------------------------------------------------------------------ */
/* Plugin descriptors (returned by kagzi_plugin_entry)                      */
/* ------------------------------------------------------------------------ */

/* A workflow function. Called on an executor thread; see THREADS. Returns
 * KAGZI_OK (completed; output from set_output), KAGZI_SUSPEND (only when a
 * host call returned it), or KAGZI_ERR_RETRYABLE / KAGZI_ERR_PERMANENT
 * (failed; message from set_error). user_data is kagzi_workflow.user_data. */
typedef kagzi_status (*kagzi_run_fn)(const kagzi_host *host, kagzi_context *ctx, void *user_data);

typedef struct kagzi_workflow {
  uint32_t struct_size; /* sizeof(kagzi_workflow) */
  uint16_t abi_major;   /* KAGZI_ABI_MAJOR */
  uint16_t abi_minor;   /* KAGZI_ABI_MINOR */
  const char *name;     /* workflow name, see STRINGS */
  uint32_t version;     /* >= 1; new runs take the highest loaded version */
  uint32_t reserved0;   /* must be 0 */
  kagzi_run_fn run;
  void *user_data; /* passed to run() untouched */
  /* ---- ABI 1.1 ---- */
  /* Deadline of every run of this workflow, from its start, unless the run
   * was started with its own (kagzictl start --timeout). 0: none. The host
   * reads it only when struct_size covers it. */
  uint64_t timeout_ms;
} kagzi_workflow;

typedef struct kagzi_plugin {
  uint32_t struct_size; /* sizeof(kagzi_plugin) */
  uint16_t abi_major;   /* KAGZI_ABI_MAJOR */
  uint16_t abi_minor;   /* KAGZI_ABI_MINOR */
  const char *name;     /* plugin name, see STRINGS */
  const char *version;  /* plugin version text, e.g. "1.2.0" */
  uint32_t workflow_count;
  uint32_t reserved0; /* must be 0 */
  /* Array of workflow_count descriptors, all with the same struct_size: the
   * host steps through it by the first element's struct_size, so a plugin
   * built against an older minor (smaller kagzi_workflow) loads unchanged. */
  const kagzi_workflow *workflows;
  /* Optional (may be NULL). Called once after the plugin is accepted and
   * before any run(). A status other than KAGZI_OK refuses the plugin. */
  kagzi_status (*init)(void);
  /* Optional. Called once at daemon shutdown, after every run() returned. */
  void (*deinit)(void);
  /* Optional. Plugin-side extensions by string id; NULL if unknown. */
  const void *(*get_extension)(const char *id);
} kagzi_plugin;

/* The one exported symbol. The host passes its own ABI version so a plugin
 * can adapt or refuse (return NULL). Returns a descriptor with static
 * lifetime, or NULL to refuse to load. */
#define KAGZI_PLUGIN_ENTRY_SYMBOL "kagzi_plugin_entry"
typedef const kagzi_plugin *(*kagzi_plugin_entry_fn)(uint16_t host_abi_major,
                                                     uint16_t host_abi_minor);

#if defined(__GNUC__) || defined(__clang__)
#define KAGZI_EXPORT __attribute__((visibility("default")))
#else
#define KAGZI_EXPORT
#endif

/* Declaration for plugin authors: define it in exactly one source file. */
KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KAGZI_PLUGIN_H */
