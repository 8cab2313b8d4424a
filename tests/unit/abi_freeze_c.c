/*
 * tests/unit/abi_freeze_c.c -- the plugin ABI v1.0, frozen, checked by a C11
 * compiler (-std=c11 -Wall -Wextra -pedantic -Werror, see plugin_api.cmake).
 *
 * Every size and offset below is part of the ABI: a failing assert means
 * plugins built against an older plugin.h would be misread. Growing a struct
 * is done by appending (and bumping KAGZI_ABI_MINOR): add asserts, never edit
 * existing ones. abi_freeze_test.cc holds the same asserts for C++ and calls
 * kagzi_abi_freeze_c_checked() so this object is linked into the test.
 */
// First and alone: plugin.h must compile with nothing included before it.
// clang-format off
#include <kagzi/plugin.h>
// clang-format on
#include <stddef.h>
#include <stdint.h>

#define FROZEN(cond) _Static_assert(cond, #cond)

/* Version and limits. */
FROZEN(KAGZI_ABI_MAJOR == 1);
FROZEN(KAGZI_ABI_MINOR == 0);
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

FROZEN(sizeof(kagzi_host) == 72);
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

FROZEN(sizeof(kagzi_workflow) == 40);
FROZEN(_Alignof(kagzi_workflow) == 8);
FROZEN(offsetof(kagzi_workflow, struct_size) == 0);
FROZEN(offsetof(kagzi_workflow, abi_major) == 4);
FROZEN(offsetof(kagzi_workflow, abi_minor) == 6);
FROZEN(offsetof(kagzi_workflow, name) == 8);
FROZEN(offsetof(kagzi_workflow, version) == 16);
FROZEN(offsetof(kagzi_workflow, reserved0) == 20);
FROZEN(offsetof(kagzi_workflow, run) == 24);
FROZEN(offsetof(kagzi_workflow, user_data) == 32);

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
#else
#error "abi_freeze_c.c: no frozen layout for this data model yet; add one (LP64 is frozen)"
#endif

/* The version fields are 16 and 32 bits wide everywhere. */
FROZEN(sizeof(((kagzi_plugin *)0)->struct_size) == 4);
FROZEN(sizeof(((kagzi_plugin *)0)->abi_major) == 2);
FROZEN(sizeof(((kagzi_plugin *)0)->abi_minor) == 2);
FROZEN(sizeof(((kagzi_workflow *)0)->version) == 4);
FROZEN(sizeof(((kagzi_plugin *)0)->workflow_count) == 4);

/* Function types (the controlling expression of _Generic is not evaluated). */
#define HAS_TYPE(expr, type) _Generic((expr), type : 1, default : 0)
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
FROZEN(HAS_TYPE(((const kagzi_plugin *)0)->init, kagzi_status (*)(void)));
FROZEN(HAS_TYPE(((const kagzi_plugin *)0)->deinit, void (*)(void)));
FROZEN(HAS_TYPE(((const kagzi_plugin *)0)->get_extension, const void *(*)(const char *)));

/* Called by abi_freeze_test.cc, so this translation unit is part of the test. */
int kagzi_abi_freeze_c_checked(void);
int kagzi_abi_freeze_c_checked(void) { return (int)sizeof(kagzi_host); }
