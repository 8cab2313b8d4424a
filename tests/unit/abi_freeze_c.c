/*
 * tests/unit/abi_freeze_c.c -- the plugin ABI v1.1 (and the v1.0 layout it
 * extends), frozen, checked by a C11 compiler (-std=c11 -Wall -Wextra
 * -pedantic -Werror, see plugin_api.cmake).
 *
 * Every size and offset below is part of the ABI: a failing assert means
 * plugins built against an older plugin.h would be misread. Growing a struct
 * is done by appending (and bumping KAGZI_ABI_MINOR): add asserts, never edit
 * existing offsets. The total sizes of the grown structs change with each
 * minor; every minor's size stays recorded below (KAGZI_FROZEN_*_SIZE_1_0) as
 * the end of the last field that minor had. abi_freeze_test.cc holds the same
 * asserts for C++ and calls kagzi_abi_freeze_c_checked() so this object is
 * linked into the test.
 */
// First and alone: plugin.h must compile with nothing included before it.
// clang-format off
#include <kagzi/plugin.h>
// clang-format on
#include <stddef.h>
#include <stdint.h>

#define FROZEN(cond) _Static_assert(cond, #cond)
/* Type checks (the controlling expression of _Generic is not evaluated). */
#define HAS_TYPE(expr, type) _Generic((expr), type : 1, default : 0)
/* One host callback pointer, for its size. */
#define ONE_HOST_CALLBACK (((kagzi_host *)0)->get_run_id)

/* Version and limits. */
FROZEN(KAGZI_ABI_MAJOR == 1);
FROZEN(KAGZI_ABI_MINOR == 1);
FROZEN(KAGZI_MAX_NAME_LEN == 255);

/* Status codes and log levels: fixed-width and fixed values. */
FROZEN(sizeof(kagzi_status) == 4);
FROZEN((kagzi_status)-1 < 0); /* signed */
FROZEN(KAGZI_OK == 0);
FROZEN(KAGZI_SUSPEND == 1);
FROZEN(KAGZI_ERR_RETRYABLE == 2);
FROZEN(KAGZI_ERR_PERMANENT == 3);
FROZEN(KAGZI_ERR_NONDETERMINISM == 4);
FROZEN(KAGZI_ERR_MISUSE == 5);
/* ABI 1.1 */
FROZEN(KAGZI_ERR_TIMEOUT == 6);
FROZEN(KAGZI_ERR_CANCELLED == 7);
FROZEN(KAGZI_LOG_DEBUG == 0);
FROZEN(KAGZI_LOG_INFO == 1);
FROZEN(KAGZI_LOG_WARN == 2);
FROZEN(KAGZI_LOG_ERROR == 3);

#if defined(__LP64__) || defined(_LP64)
/* x86_64 / aarch64 Linux (LP64): 8-byte pointers, 4-byte int. */
FROZEN(sizeof(void *) == 8);

FROZEN(sizeof(kagzi_writer) == 24);
FROZEN(_Alignof(kagzi_writer) == 8);
FROZEN(offsetof(kagzi_writer, struct_size) == 0);
FROZEN(offsetof(kagzi_writer, abi_major) == 4);
FROZEN(offsetof(kagzi_writer, abi_minor) == 6);
FROZEN(offsetof(kagzi_writer, host_data) == 8);
FROZEN(offsetof(kagzi_writer, write) == 16);

/* ABI 1.0 sizes of the structs that 1.1 grew: a 1.0 host table and a 1.0
 * workflow descriptor end exactly there. */
#define KAGZI_FROZEN_HOST_SIZE_1_0 72
#define KAGZI_FROZEN_WORKFLOW_SIZE_1_0 40

FROZEN(sizeof(kagzi_host) == 120);
FROZEN(_Alignof(kagzi_host) == 8);
FROZEN(offsetof(kagzi_host, struct_size) == 0);
FROZEN(offsetof(kagzi_host, abi_major) == 4);
FROZEN(offsetof(kagzi_host, abi_minor) == 6);
FROZEN(offsetof(kagzi_host, get_input) == 8);
FROZEN(offsetof(kagzi_host, step) == 16);
FROZEN(offsetof(kagzi_host, sleep) == 24);
FROZEN(offsetof(kagzi_host, set_output) == 32);
FROZEN(offsetof(kagzi_host, set_error) == 40);
FROZEN(offsetof(kagzi_host, log) == 48);
FROZEN(offsetof(kagzi_host, get_extension) == 56);
FROZEN(offsetof(kagzi_host, get_run_id) == 64);
FROZEN(offsetof(kagzi_host, get_run_id) + sizeof(ONE_HOST_CALLBACK) == KAGZI_FROZEN_HOST_SIZE_1_0);
/* ABI 1.1: appended after get_run_id. */
FROZEN(offsetof(kagzi_host, step_with_policy) == KAGZI_FROZEN_HOST_SIZE_1_0);
FROZEN(offsetof(kagzi_host, step_with_policy) == 72);
FROZEN(offsetof(kagzi_host, wait_for_event) == 80);
FROZEN(offsetof(kagzi_host, call_child) == 88);
FROZEN(offsetof(kagzi_host, parallel) == 96);
FROZEN(offsetof(kagzi_host, now_ms) == 104);
FROZEN(offsetof(kagzi_host, random_u64) == 112);

FROZEN(sizeof(kagzi_workflow) == 48);
FROZEN(_Alignof(kagzi_workflow) == 8);
FROZEN(offsetof(kagzi_workflow, struct_size) == 0);
FROZEN(offsetof(kagzi_workflow, abi_major) == 4);
FROZEN(offsetof(kagzi_workflow, abi_minor) == 6);
FROZEN(offsetof(kagzi_workflow, name) == 8);
FROZEN(offsetof(kagzi_workflow, version) == 16);
FROZEN(offsetof(kagzi_workflow, reserved0) == 20);
FROZEN(offsetof(kagzi_workflow, run) == 24);
FROZEN(offsetof(kagzi_workflow, user_data) == 32);
FROZEN(offsetof(kagzi_workflow, user_data) + sizeof(void *) == KAGZI_FROZEN_WORKFLOW_SIZE_1_0);
/* ABI 1.1 */
FROZEN(offsetof(kagzi_workflow, timeout_ms) == KAGZI_FROZEN_WORKFLOW_SIZE_1_0);
FROZEN(offsetof(kagzi_workflow, timeout_ms) == 40);

FROZEN(sizeof(kagzi_plugin) == 64);
FROZEN(_Alignof(kagzi_plugin) == 8);
FROZEN(offsetof(kagzi_plugin, struct_size) == 0);
FROZEN(offsetof(kagzi_plugin, abi_major) == 4);
FROZEN(offsetof(kagzi_plugin, abi_minor) == 6);
FROZEN(offsetof(kagzi_plugin, name) == 8);
FROZEN(offsetof(kagzi_plugin, version) == 16);
FROZEN(offsetof(kagzi_plugin, workflow_count) == 24);
FROZEN(offsetof(kagzi_plugin, reserved0) == 28);
FROZEN(offsetof(kagzi_plugin, workflows) == 32);
FROZEN(offsetof(kagzi_plugin, init) == 40);
FROZEN(offsetof(kagzi_plugin, deinit) == 48);
FROZEN(offsetof(kagzi_plugin, get_extension) == 56);

/* ABI 1.1: new structs. */
FROZEN(sizeof(kagzi_retry_policy) == 40);
FROZEN(_Alignof(kagzi_retry_policy) == 8);
FROZEN(offsetof(kagzi_retry_policy, struct_size) == 0);
FROZEN(offsetof(kagzi_retry_policy, max_attempts) == 4);
FROZEN(offsetof(kagzi_retry_policy, initial_interval_ms) == 8);
FROZEN(offsetof(kagzi_retry_policy, max_interval_ms) == 16);
FROZEN(offsetof(kagzi_retry_policy, multiplier) == 24);
FROZEN(offsetof(kagzi_retry_policy, jitter) == 32);

FROZEN(sizeof(kagzi_parallel_step) == 64);
FROZEN(_Alignof(kagzi_parallel_step) == 8);
FROZEN(offsetof(kagzi_parallel_step, struct_size) == 0);
FROZEN(offsetof(kagzi_parallel_step, reserved0) == 4);
FROZEN(offsetof(kagzi_parallel_step, step_id) == 8);
FROZEN(offsetof(kagzi_parallel_step, fn) == 16);
FROZEN(offsetof(kagzi_parallel_step, user) == 24);
FROZEN(offsetof(kagzi_parallel_step, policy) == 32);
FROZEN(offsetof(kagzi_parallel_step, status) == 40);
FROZEN(offsetof(kagzi_parallel_step, reserved1) == 44);
FROZEN(offsetof(kagzi_parallel_step, out) == 48);
FROZEN(offsetof(kagzi_parallel_step, out_len) == 56);
#else
#error "abi_freeze_c.c: no frozen layout for this data model yet; add one (LP64 is frozen)"
#endif

/* The version fields are 16 and 32 bits wide everywhere. */
FROZEN(sizeof(((kagzi_plugin *)0)->struct_size) == 4);
FROZEN(sizeof(((kagzi_plugin *)0)->abi_major) == 2);
FROZEN(sizeof(((kagzi_plugin *)0)->abi_minor) == 2);
FROZEN(sizeof(((kagzi_workflow *)0)->version) == 4);
FROZEN(sizeof(((kagzi_plugin *)0)->workflow_count) == 4);
/* ABI 1.1 field widths. */
FROZEN(sizeof(((kagzi_workflow *)0)->timeout_ms) == 8);
FROZEN(sizeof(((kagzi_retry_policy *)0)->struct_size) == 4);
FROZEN(sizeof(((kagzi_retry_policy *)0)->max_attempts) == 4);
FROZEN(sizeof(((kagzi_retry_policy *)0)->initial_interval_ms) == 8);
FROZEN(sizeof(((kagzi_retry_policy *)0)->max_interval_ms) == 8);
FROZEN(sizeof(((kagzi_retry_policy *)0)->multiplier) == 8);
FROZEN(sizeof(((kagzi_retry_policy *)0)->jitter) == 8);
FROZEN(sizeof(((kagzi_parallel_step *)0)->struct_size) == 4);
FROZEN(sizeof(((kagzi_parallel_step *)0)->reserved0) == 4);
FROZEN(sizeof(((kagzi_parallel_step *)0)->status) == 4);
FROZEN(sizeof(((kagzi_parallel_step *)0)->reserved1) == 4);
FROZEN(HAS_TYPE(((kagzi_workflow *)0)->timeout_ms, uint64_t));
FROZEN(HAS_TYPE(((kagzi_retry_policy *)0)->max_attempts, uint32_t));
FROZEN(HAS_TYPE(((kagzi_retry_policy *)0)->initial_interval_ms, uint64_t));
FROZEN(HAS_TYPE(((kagzi_retry_policy *)0)->max_interval_ms, uint64_t));
FROZEN(HAS_TYPE(((kagzi_retry_policy *)0)->multiplier, double));
FROZEN(HAS_TYPE(((kagzi_retry_policy *)0)->jitter, double));
FROZEN(HAS_TYPE(((kagzi_parallel_step *)0)->status, kagzi_status));
FROZEN(HAS_TYPE(((kagzi_parallel_step *)0)->step_id, const char *));
FROZEN(HAS_TYPE(((kagzi_parallel_step *)0)->fn, kagzi_step_fn));
FROZEN(HAS_TYPE(((kagzi_parallel_step *)0)->user, void *));
FROZEN(HAS_TYPE(((kagzi_parallel_step *)0)->policy, const kagzi_retry_policy *));
FROZEN(HAS_TYPE(((kagzi_parallel_step *)0)->out, const char *));
FROZEN(HAS_TYPE(((kagzi_parallel_step *)0)->out_len, size_t));

/* Function types. */
#define HOST ((const kagzi_host *)0)
FROZEN(HAS_TYPE(&kagzi_plugin_entry, kagzi_plugin_entry_fn));
FROZEN(HAS_TYPE(((const kagzi_writer *)0)->write,
                kagzi_status (*)(const kagzi_writer *, const char *, size_t)));
FROZEN(HAS_TYPE((kagzi_step_fn)0, kagzi_status (*)(void *, const kagzi_writer *)));
FROZEN(HAS_TYPE((kagzi_run_fn)0, kagzi_status (*)(const kagzi_host *, kagzi_context *, void *)));
FROZEN(HAS_TYPE(HOST->get_input, kagzi_status (*)(kagzi_context *, const char **, size_t *)));
FROZEN(HAS_TYPE(HOST->step, kagzi_status (*)(kagzi_context *, const char *, kagzi_step_fn, void *,
                                             const char **, size_t *)));
FROZEN(HAS_TYPE(HOST->sleep, kagzi_status (*)(kagzi_context *, const char *, uint64_t)));
FROZEN(HAS_TYPE(HOST->set_output, kagzi_status (*)(kagzi_context *, const char *, size_t)));
FROZEN(HAS_TYPE(HOST->set_error, kagzi_status (*)(kagzi_context *, const char *, size_t)));
FROZEN(HAS_TYPE(HOST->log, void (*)(kagzi_context *, int32_t, const char *, size_t)));
FROZEN(HAS_TYPE(HOST->get_extension, const void *(*)(kagzi_context *, const char *)));
FROZEN(HAS_TYPE(HOST->get_run_id, kagzi_status (*)(kagzi_context *, const char **, size_t *)));
/* ABI 1.1 callbacks. */
FROZEN(HAS_TYPE(HOST->step_with_policy,
                kagzi_status (*)(kagzi_context *, const char *, kagzi_step_fn, void *,
                                 const kagzi_retry_policy *, const char **, size_t *)));
FROZEN(HAS_TYPE(HOST->wait_for_event, kagzi_status (*)(kagzi_context *, const char *, const char *,
                                                       int64_t, const char **, size_t *)));
FROZEN(HAS_TYPE(HOST->call_child, kagzi_status (*)(kagzi_context *, const char *, const char *,
                                                   const char *, size_t, const char **, size_t *)));
FROZEN(HAS_TYPE(HOST->parallel,
                kagzi_status (*)(kagzi_context *, kagzi_parallel_step *, size_t, uint32_t)));
FROZEN(HAS_TYPE(HOST->now_ms, kagzi_status (*)(kagzi_context *, const char *, int64_t *)));
FROZEN(HAS_TYPE(HOST->random_u64, kagzi_status (*)(kagzi_context *, const char *, uint64_t *)));
FROZEN(HAS_TYPE(((const kagzi_plugin *)0)->init, kagzi_status (*)(void)));
FROZEN(HAS_TYPE(((const kagzi_plugin *)0)->deinit, void (*)(void)));
FROZEN(HAS_TYPE(((const kagzi_plugin *)0)->get_extension, const void *(*)(const char *)));

/* Called by abi_freeze_test.cc, so this translation unit is part of the test. */
int kagzi_abi_freeze_c_checked(void);
int kagzi_abi_freeze_c_checked(void) { return (int)sizeof(kagzi_host); }

/* The same for the other structs, so C and C++ are compared on all of them. */
int kagzi_abi_freeze_c_size(int which);
int kagzi_abi_freeze_c_size(int which) {
  switch (which) {
    case 0:
      return (int)sizeof(kagzi_writer);
    case 1:
      return (int)sizeof(kagzi_host);
    case 2:
      return (int)sizeof(kagzi_workflow);
    case 3:
      return (int)sizeof(kagzi_plugin);
    case 4:
      return (int)sizeof(kagzi_retry_policy);
    case 5:
      return (int)sizeof(kagzi_parallel_step);
    case 6:
      return KAGZI_FROZEN_HOST_SIZE_1_0;
    case 7:
      return KAGZI_FROZEN_WORKFLOW_SIZE_1_0;
    default:
      return -1;
  }
}
