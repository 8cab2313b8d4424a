// tests/unit/abi_freeze_test.cc -- the plugin ABI v1.1 (and the v1.0 layout
// it extends), frozen, checked by a C++20 compiler; also the check that
// kagzi/plugin.h compiles as C++20 under -Wall -Wextra -pedantic -Werror
// (plugin_api.cmake sets the flags, and this file includes plugin.h before
// anything else).
//
// Same asserts as abi_freeze_c.c (the C11 side), plus the exact function
// types. A failing assert means the ABI changed: grow structs by appending
// and bumping KAGZI_ABI_MINOR, add asserts, never edit existing offsets. The
// total size of a grown struct changes with its minor; each minor's size
// stays recorded below (kHostSize_1_0, ...) as the end of its last field.
// First and alone: plugin.h must compile with nothing included before it.
// clang-format off
#include <kagzi/plugin.h>
// clang-format on

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <gtest/gtest.h>

extern "C" int kagzi_abi_freeze_c_checked(void);
extern "C" int kagzi_abi_freeze_c_size(int which);

namespace {

static_assert(KAGZI_ABI_MAJOR == 1);
static_assert(KAGZI_ABI_MINOR == 1);
static_assert(KAGZI_MAX_NAME_LEN == 255);

static_assert(std::is_same_v<kagzi_status, std::int32_t>);
static_assert(std::is_same_v<decltype(KAGZI_OK), kagzi_status>);
static_assert(KAGZI_OK == 0);
static_assert(KAGZI_SUSPEND == 1);
static_assert(KAGZI_ERR_RETRYABLE == 2);
static_assert(KAGZI_ERR_PERMANENT == 3);
static_assert(KAGZI_ERR_NONDETERMINISM == 4);
static_assert(KAGZI_ERR_MISUSE == 5);
// ABI 1.1
static_assert(std::is_same_v<decltype(KAGZI_ERR_TIMEOUT), kagzi_status>);
static_assert(std::is_same_v<decltype(KAGZI_ERR_CANCELLED), kagzi_status>);
static_assert(KAGZI_ERR_TIMEOUT == 6);
static_assert(KAGZI_ERR_CANCELLED == 7);
static_assert(std::is_same_v<decltype(KAGZI_LOG_INFO), std::int32_t>);
static_assert(KAGZI_LOG_DEBUG == 0);
static_assert(KAGZI_LOG_INFO == 1);
static_assert(KAGZI_LOG_WARN == 2);
static_assert(KAGZI_LOG_ERROR == 3);

#if defined(__LP64__) || defined(_LP64)
static_assert(sizeof(void*) == 8);

// ABI 1.0 sizes of the structs that 1.1 grew: a 1.0 host table and a 1.0
// workflow descriptor end exactly there (plugins built for 1.0 and hosts of
// 1.0 use these sizes in struct_size).
constexpr std::size_t kHostSize_1_0 = 72;
constexpr std::size_t kWorkflowSize_1_0 = 40;
// ABI 1.1 sizes.
constexpr std::size_t kHostSize_1_1 = 120;
constexpr std::size_t kWorkflowSize_1_1 = 48;

static_assert(std::is_standard_layout_v<kagzi_writer>);
static_assert(sizeof(kagzi_writer) == 24 && alignof(kagzi_writer) == 8);
static_assert(offsetof(kagzi_writer, struct_size) == 0);
static_assert(offsetof(kagzi_writer, abi_major) == 4);
static_assert(offsetof(kagzi_writer, abi_minor) == 6);
static_assert(offsetof(kagzi_writer, host_data) == 8);
static_assert(offsetof(kagzi_writer, write) == 16);

static_assert(std::is_standard_layout_v<kagzi_host>);
static_assert(sizeof(kagzi_host) == kHostSize_1_1 && alignof(kagzi_host) == 8);
static_assert(offsetof(kagzi_host, struct_size) == 0);
static_assert(offsetof(kagzi_host, abi_major) == 4);
static_assert(offsetof(kagzi_host, abi_minor) == 6);
static_assert(offsetof(kagzi_host, get_input) == 8);
static_assert(offsetof(kagzi_host, step) == 16);
static_assert(offsetof(kagzi_host, sleep) == 24);
static_assert(offsetof(kagzi_host, set_output) == 32);
static_assert(offsetof(kagzi_host, set_error) == 40);
static_assert(offsetof(kagzi_host, log) == 48);
static_assert(offsetof(kagzi_host, get_extension) == 56);
static_assert(offsetof(kagzi_host, get_run_id) == 64);
static_assert(offsetof(kagzi_host, get_run_id) + sizeof(kagzi_host::get_run_id) == kHostSize_1_0);
// ABI 1.1: appended after get_run_id.
static_assert(offsetof(kagzi_host, step_with_policy) == kHostSize_1_0);
static_assert(offsetof(kagzi_host, step_with_policy) == 72);
static_assert(offsetof(kagzi_host, wait_for_event) == 80);
static_assert(offsetof(kagzi_host, call_child) == 88);
static_assert(offsetof(kagzi_host, parallel) == 96);
static_assert(offsetof(kagzi_host, now_ms) == 104);
static_assert(offsetof(kagzi_host, random_u64) == 112);
static_assert(offsetof(kagzi_host, random_u64) + sizeof(kagzi_host::random_u64) == kHostSize_1_1);

static_assert(std::is_standard_layout_v<kagzi_workflow>);
static_assert(sizeof(kagzi_workflow) == kWorkflowSize_1_1 && alignof(kagzi_workflow) == 8);
static_assert(offsetof(kagzi_workflow, struct_size) == 0);
static_assert(offsetof(kagzi_workflow, abi_major) == 4);
static_assert(offsetof(kagzi_workflow, abi_minor) == 6);
static_assert(offsetof(kagzi_workflow, name) == 8);
static_assert(offsetof(kagzi_workflow, version) == 16);
static_assert(offsetof(kagzi_workflow, reserved0) == 20);
static_assert(offsetof(kagzi_workflow, run) == 24);
static_assert(offsetof(kagzi_workflow, user_data) == 32);
static_assert(offsetof(kagzi_workflow, user_data) + sizeof(void*) == kWorkflowSize_1_0);
// ABI 1.1
static_assert(offsetof(kagzi_workflow, timeout_ms) == kWorkflowSize_1_0);
static_assert(offsetof(kagzi_workflow, timeout_ms) == 40);

static_assert(std::is_standard_layout_v<kagzi_plugin>);
static_assert(sizeof(kagzi_plugin) == 64 && alignof(kagzi_plugin) == 8);
static_assert(offsetof(kagzi_plugin, struct_size) == 0);
static_assert(offsetof(kagzi_plugin, abi_major) == 4);
static_assert(offsetof(kagzi_plugin, abi_minor) == 6);
static_assert(offsetof(kagzi_plugin, name) == 8);
static_assert(offsetof(kagzi_plugin, version) == 16);
static_assert(offsetof(kagzi_plugin, workflow_count) == 24);
static_assert(offsetof(kagzi_plugin, reserved0) == 28);
static_assert(offsetof(kagzi_plugin, workflows) == 32);
static_assert(offsetof(kagzi_plugin, init) == 40);
static_assert(offsetof(kagzi_plugin, deinit) == 48);
static_assert(offsetof(kagzi_plugin, get_extension) == 56);

// ABI 1.1: new structs.
static_assert(std::is_standard_layout_v<kagzi_retry_policy>);
static_assert(sizeof(kagzi_retry_policy) == 40 && alignof(kagzi_retry_policy) == 8);
static_assert(offsetof(kagzi_retry_policy, struct_size) == 0);
static_assert(offsetof(kagzi_retry_policy, max_attempts) == 4);
static_assert(offsetof(kagzi_retry_policy, initial_interval_ms) == 8);
static_assert(offsetof(kagzi_retry_policy, max_interval_ms) == 16);
static_assert(offsetof(kagzi_retry_policy, multiplier) == 24);
static_assert(offsetof(kagzi_retry_policy, jitter) == 32);

static_assert(std::is_standard_layout_v<kagzi_parallel_step>);
static_assert(sizeof(kagzi_parallel_step) == 64 && alignof(kagzi_parallel_step) == 8);
static_assert(offsetof(kagzi_parallel_step, struct_size) == 0);
static_assert(offsetof(kagzi_parallel_step, reserved0) == 4);
static_assert(offsetof(kagzi_parallel_step, step_id) == 8);
static_assert(offsetof(kagzi_parallel_step, fn) == 16);
static_assert(offsetof(kagzi_parallel_step, user) == 24);
static_assert(offsetof(kagzi_parallel_step, policy) == 32);
static_assert(offsetof(kagzi_parallel_step, status) == 40);
static_assert(offsetof(kagzi_parallel_step, reserved1) == 44);
static_assert(offsetof(kagzi_parallel_step, out) == 48);
static_assert(offsetof(kagzi_parallel_step, out_len) == 56);
#else
#error "abi_freeze_test.cc: no frozen layout for this data model yet; add one (LP64 is frozen)"
#endif

// Field types.
static_assert(std::is_same_v<decltype(kagzi_plugin::struct_size), std::uint32_t>);
static_assert(std::is_same_v<decltype(kagzi_plugin::abi_major), std::uint16_t>);
static_assert(std::is_same_v<decltype(kagzi_plugin::abi_minor), std::uint16_t>);
static_assert(std::is_same_v<decltype(kagzi_plugin::workflow_count), std::uint32_t>);
static_assert(std::is_same_v<decltype(kagzi_plugin::reserved0), std::uint32_t>);
static_assert(std::is_same_v<decltype(kagzi_workflow::version), std::uint32_t>);
static_assert(std::is_same_v<decltype(kagzi_workflow::reserved0), std::uint32_t>);
static_assert(std::is_same_v<decltype(kagzi_workflow::name), const char*>);
static_assert(std::is_same_v<decltype(kagzi_plugin::workflows), const kagzi_workflow*>);
// ABI 1.1 field types.
static_assert(std::is_same_v<decltype(kagzi_workflow::timeout_ms), std::uint64_t>);
static_assert(std::is_same_v<decltype(kagzi_retry_policy::struct_size), std::uint32_t>);
static_assert(std::is_same_v<decltype(kagzi_retry_policy::max_attempts), std::uint32_t>);
static_assert(std::is_same_v<decltype(kagzi_retry_policy::initial_interval_ms), std::uint64_t>);
static_assert(std::is_same_v<decltype(kagzi_retry_policy::max_interval_ms), std::uint64_t>);
static_assert(std::is_same_v<decltype(kagzi_retry_policy::multiplier), double>);
static_assert(std::is_same_v<decltype(kagzi_retry_policy::jitter), double>);
static_assert(std::is_same_v<decltype(kagzi_parallel_step::struct_size), std::uint32_t>);
static_assert(std::is_same_v<decltype(kagzi_parallel_step::reserved0), std::uint32_t>);
static_assert(std::is_same_v<decltype(kagzi_parallel_step::step_id), const char*>);
static_assert(std::is_same_v<decltype(kagzi_parallel_step::fn), kagzi_step_fn>);
static_assert(std::is_same_v<decltype(kagzi_parallel_step::user), void*>);
static_assert(std::is_same_v<decltype(kagzi_parallel_step::policy), const kagzi_retry_policy*>);
static_assert(std::is_same_v<decltype(kagzi_parallel_step::status), kagzi_status>);
static_assert(std::is_same_v<decltype(kagzi_parallel_step::reserved1), std::uint32_t>);
static_assert(std::is_same_v<decltype(kagzi_parallel_step::out), const char*>);
static_assert(std::is_same_v<decltype(kagzi_parallel_step::out_len), std::size_t>);

// Function types.
static_assert(std::is_same_v<kagzi_step_fn, kagzi_status (*)(void*, const kagzi_writer*)>);
static_assert(
    std::is_same_v<kagzi_run_fn, kagzi_status (*)(const kagzi_host*, kagzi_context*, void*)>);
static_assert(
    std::is_same_v<kagzi_plugin_entry_fn, const kagzi_plugin* (*)(std::uint16_t, std::uint16_t)>);
static_assert(std::is_same_v<decltype(&kagzi_plugin_entry), kagzi_plugin_entry_fn>);
static_assert(std::is_same_v<decltype(kagzi_writer::write),
                             kagzi_status (*)(const kagzi_writer*, const char*, std::size_t)>);
static_assert(std::is_same_v<decltype(kagzi_host::get_input),
                             kagzi_status (*)(kagzi_context*, const char**, std::size_t*)>);
static_assert(std::is_same_v<decltype(kagzi_host::step),
                             kagzi_status (*)(kagzi_context*, const char*, kagzi_step_fn, void*,
                                              const char**, std::size_t*)>);
static_assert(std::is_same_v<decltype(kagzi_host::sleep),
                             kagzi_status (*)(kagzi_context*, const char*, std::uint64_t)>);
static_assert(std::is_same_v<decltype(kagzi_host::set_output),
                             kagzi_status (*)(kagzi_context*, const char*, std::size_t)>);
static_assert(std::is_same_v<decltype(kagzi_host::set_error),
                             kagzi_status (*)(kagzi_context*, const char*, std::size_t)>);
static_assert(std::is_same_v<decltype(kagzi_host::log),
                             void (*)(kagzi_context*, std::int32_t, const char*, std::size_t)>);
static_assert(std::is_same_v<decltype(kagzi_host::get_extension),
                             const void* (*)(kagzi_context*, const char*)>);
static_assert(std::is_same_v<decltype(kagzi_host::get_run_id),
                             kagzi_status (*)(kagzi_context*, const char**, std::size_t*)>);
// ABI 1.1 callbacks.
static_assert(
    std::is_same_v<decltype(kagzi_host::step_with_policy),
                   kagzi_status (*)(kagzi_context*, const char*, kagzi_step_fn, void*,
                                    const kagzi_retry_policy*, const char**, std::size_t*)>);
static_assert(std::is_same_v<decltype(kagzi_host::wait_for_event),
                             kagzi_status (*)(kagzi_context*, const char*, const char*,
                                              std::int64_t, const char**, std::size_t*)>);
static_assert(std::is_same_v<decltype(kagzi_host::call_child),
                             kagzi_status (*)(kagzi_context*, const char*, const char*, const char*,
                                              std::size_t, const char**, std::size_t*)>);
static_assert(std::is_same_v<decltype(kagzi_host::parallel),
                             kagzi_status (*)(kagzi_context*, kagzi_parallel_step*, std::size_t,
                                              std::uint32_t)>);
static_assert(std::is_same_v<decltype(kagzi_host::now_ms),
                             kagzi_status (*)(kagzi_context*, const char*, std::int64_t*)>);
static_assert(std::is_same_v<decltype(kagzi_host::random_u64),
                             kagzi_status (*)(kagzi_context*, const char*, std::uint64_t*)>);
static_assert(std::is_same_v<decltype(kagzi_plugin::init), kagzi_status (*)()>);
static_assert(std::is_same_v<decltype(kagzi_plugin::deinit), void (*)()>);
static_assert(std::is_same_v<decltype(kagzi_plugin::get_extension), const void* (*)(const char*)>);

TEST(AbiFreeze, CAndCxxAgree) {
  // The C translation unit compiled (its _Static_asserts held) and sees the
  // same sizes as C++.
  EXPECT_EQ(kagzi_abi_freeze_c_checked(), static_cast<int>(sizeof(kagzi_host)));
  EXPECT_EQ(kagzi_abi_freeze_c_size(0), static_cast<int>(sizeof(kagzi_writer)));
  EXPECT_EQ(kagzi_abi_freeze_c_size(1), static_cast<int>(sizeof(kagzi_host)));
  EXPECT_EQ(kagzi_abi_freeze_c_size(2), static_cast<int>(sizeof(kagzi_workflow)));
  EXPECT_EQ(kagzi_abi_freeze_c_size(3), static_cast<int>(sizeof(kagzi_plugin)));
  EXPECT_EQ(kagzi_abi_freeze_c_size(4), static_cast<int>(sizeof(kagzi_retry_policy)));
  EXPECT_EQ(kagzi_abi_freeze_c_size(5), static_cast<int>(sizeof(kagzi_parallel_step)));
#if defined(__LP64__) || defined(_LP64)
  EXPECT_EQ(kagzi_abi_freeze_c_size(6), static_cast<int>(kHostSize_1_0));
  EXPECT_EQ(kagzi_abi_freeze_c_size(7), static_cast<int>(kWorkflowSize_1_0));
#endif
}

TEST(AbiFreeze, EntrySymbolName) { EXPECT_STREQ(KAGZI_PLUGIN_ENTRY_SYMBOL, "kagzi_plugin_entry"); }

}  // namespace
