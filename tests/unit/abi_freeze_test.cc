// tests/unit/abi_freeze_test.cc -- the plugin ABI v1.0, frozen, checked by a
// C++20 compiler; also the check that kagzi/plugin.h compiles as C++20 under
// -Wall -Wextra -pedantic -Werror (plugin_api.cmake sets the flags, and this
// file includes plugin.h before anything else).
//
// Same asserts as abi_freeze_c.c (the C11 side), plus the exact function
// types. A failing assert means the ABI changed: grow structs by appending
// and bumping KAGZI_ABI_MINOR, add asserts, never edit existing ones.
// First and alone: plugin.h must compile with nothing included before it.
// clang-format off
#include <kagzi/plugin.h>
// clang-format on

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <gtest/gtest.h>

extern "C" int kagzi_abi_freeze_c_checked(void);

namespace {

static_assert(KAGZI_ABI_MAJOR == 1);
static_assert(KAGZI_ABI_MINOR == 0);
static_assert(KAGZI_MAX_NAME_LEN == 255);

static_assert(std::is_same_v<kagzi_status, std::int32_t>);
static_assert(std::is_same_v<decltype(KAGZI_OK), kagzi_status>);
static_assert(KAGZI_OK == 0);
static_assert(KAGZI_SUSPEND == 1);
static_assert(KAGZI_ERR_RETRYABLE == 2);
static_assert(KAGZI_ERR_PERMANENT == 3);
static_assert(KAGZI_ERR_NONDETERMINISM == 4);
static_assert(KAGZI_ERR_MISUSE == 5);
static_assert(std::is_same_v<decltype(KAGZI_LOG_INFO), std::int32_t>);
static_assert(KAGZI_LOG_DEBUG == 0);
static_assert(KAGZI_LOG_INFO == 1);
static_assert(KAGZI_LOG_WARN == 2);
static_assert(KAGZI_LOG_ERROR == 3);

#if defined(__LP64__) || defined(_LP64)
static_assert(sizeof(void*) == 8);

static_assert(std::is_standard_layout_v<kagzi_writer>);
static_assert(sizeof(kagzi_writer) == 24 && alignof(kagzi_writer) == 8);
static_assert(offsetof(kagzi_writer, struct_size) == 0);
static_assert(offsetof(kagzi_writer, abi_major) == 4);
static_assert(offsetof(kagzi_writer, abi_minor) == 6);
static_assert(offsetof(kagzi_writer, host_data) == 8);
static_assert(offsetof(kagzi_writer, write) == 16);

static_assert(std::is_standard_layout_v<kagzi_host>);
static_assert(sizeof(kagzi_host) == 72 && alignof(kagzi_host) == 8);
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

static_assert(std::is_standard_layout_v<kagzi_workflow>);
static_assert(sizeof(kagzi_workflow) == 40 && alignof(kagzi_workflow) == 8);
static_assert(offsetof(kagzi_workflow, struct_size) == 0);
static_assert(offsetof(kagzi_workflow, abi_major) == 4);
static_assert(offsetof(kagzi_workflow, abi_minor) == 6);
static_assert(offsetof(kagzi_workflow, name) == 8);
static_assert(offsetof(kagzi_workflow, version) == 16);
static_assert(offsetof(kagzi_workflow, reserved0) == 20);
static_assert(offsetof(kagzi_workflow, run) == 24);
static_assert(offsetof(kagzi_workflow, user_data) == 32);

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
static_assert(std::is_same_v<decltype(kagzi_plugin::init), kagzi_status (*)()>);
static_assert(std::is_same_v<decltype(kagzi_plugin::deinit), void (*)()>);
static_assert(std::is_same_v<decltype(kagzi_plugin::get_extension), const void* (*)(const char*)>);

TEST(AbiFreeze, CAndCxxAgree) {
  // The C translation unit compiled (its _Static_asserts held) and sees the
  // same host table size as C++.
  EXPECT_EQ(kagzi_abi_freeze_c_checked(), static_cast<int>(sizeof(kagzi_host)));
}

TEST(AbiFreeze, EntrySymbolName) { EXPECT_STREQ(KAGZI_PLUGIN_ENTRY_SYMBOL, "kagzi_plugin_entry"); }

}  // namespace
