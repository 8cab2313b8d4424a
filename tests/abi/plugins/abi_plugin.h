/*
 * tests/abi/plugins/abi_plugin.h -- shared helpers for the ABI test corpus.
 *
 * The corpus (the .c and .cc files here) is a set of deliberately broken or
 * hostile plugins; each file breaks exactly one rule of kagzi/plugin.h so the
 * host's refusal (or run-time verdict) can be asserted per file. These helpers
 * only spell out the well-formed parts of a descriptor, so every file shows
 * its one defect plainly. C11 and C++20 (designated initializers in order).
 */
#ifndef KAGZI_TESTS_ABI_PLUGIN_H
#define KAGZI_TESTS_ABI_PLUGIN_H

#include <kagzi/plugin.h>

/* A well-formed workflow descriptor of ABI 1.0. */
#define ABI_WORKFLOW(name_, version_, run_)                                               \
  {                                                                                       \
    .struct_size = sizeof(kagzi_workflow), .abi_major = KAGZI_ABI_MAJOR,                  \
    .abi_minor = KAGZI_ABI_MINOR, .name = (name_), .version = (version_), .reserved0 = 0, \
    .run = (run_), .user_data = NULL, .timeout_ms = 0                                     \
  }

/* A well-formed plugin descriptor of ABI 1.0 over a static workflow array. */
#define ABI_PLUGIN(name_, workflows_, init_)                                          \
  {                                                                                   \
    .struct_size = sizeof(kagzi_plugin), .abi_major = KAGZI_ABI_MAJOR,                \
    .abi_minor = KAGZI_ABI_MINOR, .name = (name_), .version = "0.0.1-abi-test",       \
    .workflow_count = sizeof(workflows_) / sizeof((workflows_)[0]), .reserved0 = 0,   \
    .workflows = (workflows_), .init = (init_), .deinit = NULL, .get_extension = NULL \
  }

#ifdef __cplusplus
#define ABI_UNUSED_FN [[maybe_unused]]
#else
#define ABI_UNUSED_FN __attribute__((unused))
#endif

/* A workflow that completes at once with a null output; for descriptors
 * whose defect is elsewhere (they are refused before any run). */
ABI_UNUSED_FN static kagzi_status abi_trivial_run(const kagzi_host *host, kagzi_context *ctx,
                                                  void *user_data) {
  (void)host;
  (void)ctx;
  (void)user_data;
  return KAGZI_OK;
}

#endif /* KAGZI_TESTS_ABI_PLUGIN_H */
