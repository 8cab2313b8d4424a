// Fuzz target "plugin_descriptor": the plugin host's checks of a plugin's
// descriptors (daemon/plugin_host.cc), through the real loader.
//
// Each input describes a kagzi_plugin and its kagzi_workflow array (sizes,
// ABI numbers, names of any bytes and length, versions, counts, NULLs, an
// init that succeeds, fails or throws, an entry that returns NULL or
// throws). A fresh PluginRegistry then scans a directory holding one real
// plugin file, descriptor_plugin.so, whose kagzi_plugin_entry returns that
// descriptor. The memory handed over is exactly what the ABI promises (a
// workflow array of workflow_count * struct_size bytes, NUL-terminated
// strings), so AddressSanitizer reports any read beyond it; three cases
// break the promise on purpose to prove the loader's bounds:
//   - a workflow_count over the limit (4096) comes with a one-entry array:
//     the count must be refused before the array is read;
//   - a name may be 256 bytes with no NUL: the loader reads names with
//     strnlen bounded to 256 and must refuse it without reading further;
//   - a name may be 64 KiB long (NUL-terminated): refused as too long.
// Properties: the registry loads the plugin exactly when an independent
// statement of the rules (Expected() below) says it is valid, registering
// every workflow it declares; otherwise it reports exactly one refusal,
// whose reason is valid UTF-8 free of terminal control bytes (it goes to
// the log); init() runs only for a plugin that passed every other check.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "fuzz_support.h"
#include "kagzi/core/log.h"
#include "kagzi/core/validation.h"
#include "plugin_host.h"

namespace {

using kagzi::fuzz::FuzzInput;
namespace fs = std::filesystem;

constexpr std::uint32_t kMaxWorkflows = 4096;  // kMaxWorkflowsPerPlugin in plugin_host.cc
constexpr std::size_t kWorkflowSize10 = offsetof(kagzi_workflow, timeout_ms);

// What the current input made; kagzi_fuzz_current_descriptor returns it.
struct Current {
  const kagzi_plugin* descriptor = nullptr;
  bool entry_throws = false;
  int init_calls = 0;
};
Current g_current;
std::string g_plugin_dir;

kagzi_status RunNothing(const kagzi_host*, kagzi_context*, void*) { return KAGZI_OK; }
kagzi_status InitOk() {
  ++g_current.init_calls;
  return KAGZI_OK;
}
kagzi_status InitFails() {
  ++g_current.init_calls;
  return KAGZI_ERR_PERMANENT;
}
kagzi_status InitThrows() {
  ++g_current.init_calls;
  throw std::runtime_error("init throws");
}
void DeinitNothing() {}
void DeinitThrows() { throw std::runtime_error("deinit throws"); }

// A string the descriptor points at, and whether the rules accept it.
struct Text {
  std::unique_ptr<char[]> bytes;  // NULL for a NULL pointer
  bool valid = false;
};

Text MakeText(FuzzInput& in) {
  Text t;
  const std::uint8_t mode = in.Byte();
  if (mode < 8) return t;  // NULL
  std::string s;
  if (mode < 16) {
    // 256 bytes and no NUL: breaks the ABI; the loader must stop at 256.
    t.bytes = std::make_unique<char[]>(256);
    for (std::size_t i = 0; i < 256; ++i) t.bytes[i] = 'a';
    return t;
  }
  if (mode < 24) {
    s.assign(64 * 1024, 'n');
  } else if (mode < 32) {
    s.assign(255 + (mode & 1), 'x');  // at and just over the limit
  } else {
    s = in.String(300);
    // A NUL in the middle ends the C string there.
    s = s.substr(0, s.find('\0'));
  }
  t.bytes = std::make_unique<char[]>(s.size() + 1);
  std::memcpy(t.bytes.get(), s.data(), s.size());
  t.bytes[s.size()] = '\0';
  t.valid = kagzi::ValidateName(s, "name").ok();
  return t;
}

std::uint16_t AbiNumber(FuzzInput& in, std::uint16_t usual) {
  const std::uint8_t b = in.Byte();
  if (b < 200) return usual;
  if (b < 240) return static_cast<std::uint16_t>(usual + (b % 3) - 1);
  return in.Integral<std::uint16_t>();
}

std::uint32_t Version(FuzzInput& in) {
  const std::uint8_t b = in.Byte();
  if (b < 200) return 1 + b % 4;
  if (b < 230) return b % 2 == 0 ? 0 : 0x7FFFFFFFu + (b % 3);
  return in.Integral<std::uint32_t>();
}

struct WorkflowSpec {
  std::uint32_t struct_size = 0;
  std::uint16_t abi_major = 0;
  std::uint16_t abi_minor = 0;
  Text name;
  std::uint32_t version = 0;
  std::uint32_t reserved0 = 0;
  bool run = true;
};

// Entry #0 always declares the array's real stride (the loader steps by
// it: a plugin that lies there is as undetectable as a count larger than
// its array); later entries may declare another size.
WorkflowSpec MakeWorkflow(FuzzInput& in, std::uint32_t stride, bool first) {
  WorkflowSpec w;
  const bool other_size = in.Byte() >= 240;
  w.struct_size = first || !other_size ? stride : in.Integral<std::uint32_t>();
  w.abi_major = AbiNumber(in, KAGZI_ABI_MAJOR);
  w.abi_minor = AbiNumber(in, KAGZI_ABI_MINOR);
  w.name = MakeText(in);
  w.version = Version(in);
  w.reserved0 = in.Byte() < 250 ? 0 : 1;
  w.run = in.Byte() < 250;
  return w;
}

// Everything one input makes, owned for the time of one scan.
struct Plugin {
  kagzi_plugin descriptor{};
  Text name, version;
  std::vector<WorkflowSpec> specs;
  std::unique_ptr<unsigned char[]> array;  // workflow_count * stride bytes
  std::uint32_t stride = 0;
  int init_mode = 0;  // 0 none, 1 ok, 2 fails, 3 throws
  bool entry_null = false;
};

std::uint32_t Count(FuzzInput& in) {
  const std::uint8_t b = in.Byte();
  if (b < 200) return b % 9;
  if (b < 215) return 9 + b % 56;  // cloned entries
  if (b < 225) return kMaxWorkflows - 1 + b % 3;
  return in.Integral<std::uint32_t>();
}

std::uint32_t Stride(FuzzInput& in) {
  const std::uint8_t b = in.Byte();
  if (b < 180) return sizeof(kagzi_workflow);
  if (b < 220) return kWorkflowSize10;
  if (b < 240) return static_cast<std::uint32_t>(sizeof(kagzi_workflow) + 8 * (b % 4));
  return in.Integral<std::uint16_t>();
}

void Build(FuzzInput& in, Plugin* p) {
  kagzi_plugin& d = p->descriptor;
  p->entry_null = in.Byte() >= 250;
  g_current.entry_throws = in.Byte() >= 250;
  d.struct_size = in.Byte() < 240 ? sizeof(kagzi_plugin) : in.Integral<std::uint32_t>();
  d.abi_major = AbiNumber(in, KAGZI_ABI_MAJOR);
  d.abi_minor = AbiNumber(in, KAGZI_ABI_MINOR);
  p->name = MakeText(in);
  p->version = MakeText(in);
  d.name = p->name.bytes.get();
  d.version = p->version.bytes.get();
  d.workflow_count = Count(in);
  d.reserved0 = in.Byte() < 250 ? 0 : 1;
  p->init_mode = in.Byte() % 4;
  d.init = p->init_mode == 0   ? nullptr
           : p->init_mode == 1 ? InitOk
           : p->init_mode == 2 ? InitFails
                               : InitThrows;
  d.deinit = in.Bool() ? nullptr : (in.Byte() < 250 ? DeinitNothing : DeinitThrows);
  d.get_extension = nullptr;
  const bool null_array = in.Byte() >= 245;
  p->stride = Stride(in);
  if (null_array) return;

  // The array: workflow_count entries of stride bytes, except when the
  // count is over the limit (one entry: the loader must not read it all).
  const std::uint32_t entries = d.workflow_count > kMaxWorkflows ? 1 : d.workflow_count;
  const std::size_t stride = std::max<std::size_t>(p->stride, 4);
  const std::size_t bytes = std::max<std::size_t>(std::size_t{entries} * stride, 4);
  p->array = std::make_unique<unsigned char[]>(bytes);
  std::memset(p->array.get(), 0, bytes);
  const std::uint32_t described = std::min<std::uint32_t>(entries, 8);
  for (std::uint32_t i = 0; i < described; ++i) {
    p->specs.push_back(MakeWorkflow(in, p->stride, i == 0));
  }
  auto write = [&](std::uint32_t i, const WorkflowSpec& w, std::uint32_t version) {
    kagzi_workflow wf{};
    wf.struct_size = w.struct_size;
    wf.abi_major = w.abi_major;
    wf.abi_minor = w.abi_minor;
    wf.name = w.name.bytes.get();
    wf.version = version;
    wf.reserved0 = w.reserved0;
    wf.run = w.run ? RunNothing : nullptr;
    wf.user_data = nullptr;
    wf.timeout_ms = 0;
    // Only the bytes the entry's stride covers are the plugin's.
    const std::size_t n = std::min<std::size_t>(sizeof wf, bytes - std::size_t{i} * stride);
    std::memcpy(p->array.get() + std::size_t{i} * stride, &wf, std::min(n, stride));
  };
  for (std::uint32_t i = 0; i < described; ++i) write(i, p->specs[i], p->specs[i].version);
  // Beyond eight: copies of the last described entry with versions counting
  // up from 1000 (distinct keys; their names point at its string).
  for (std::uint32_t i = described; i < entries && described > 0; ++i) {
    write(i, p->specs.back(), 1000 + i);
  }
  d.workflows = reinterpret_cast<const kagzi_workflow*>(p->array.get());
}

// The rules of kagzi/plugin.h as the loader must apply them: whether the
// plugin must load, and whether its init must be called.
struct Verdict {
  bool loads = false;
  bool init_called = false;
};

Verdict Expected(const Plugin& p) {
  const kagzi_plugin& d = p.descriptor;
  Verdict v;
  if (p.entry_null || g_current.entry_throws) return v;
  if (d.abi_major != KAGZI_ABI_MAJOR || d.abi_minor > KAGZI_ABI_MINOR) return v;
  if (d.struct_size < sizeof(kagzi_plugin)) return v;
  if (!p.name.valid || !p.version.valid || d.reserved0 != 0) return v;
  if (d.workflow_count == 0 || d.workflow_count > kMaxWorkflows || d.workflows == nullptr) return v;
  if (p.stride < kWorkflowSize10 || p.stride % alignof(kagzi_workflow) != 0 || p.stride > 4096) {
    return v;
  }
  const std::uint32_t entries = d.workflow_count;
  if (p.specs.size() < std::min<std::uint32_t>(entries, 8)) return v;
  std::vector<std::pair<std::string, std::uint32_t>> keys;
  for (std::uint32_t i = 0; i < entries; ++i) {
    const WorkflowSpec& w = p.specs[std::min<std::size_t>(i, p.specs.size() - 1)];
    const std::uint32_t version = i < p.specs.size() ? w.version : 1000 + i;
    if (w.struct_size != p.stride || w.abi_major != KAGZI_ABI_MAJOR ||
        w.abi_minor > KAGZI_ABI_MINOR) {
      return v;
    }
    if (w.abi_minor >= 1 && w.struct_size < sizeof(kagzi_workflow)) return v;
    if (!w.name.valid || w.reserved0 != 0 || version < 1 ||
        version > static_cast<std::uint32_t>(std::numeric_limits<std::int32_t>::max()) || !w.run) {
      return v;
    }
    std::pair<std::string, std::uint32_t> key{w.name.bytes.get(), version};
    for (const auto& k : keys) {
      if (k == key) return v;
    }
    keys.push_back(std::move(key));
  }
  v.init_called = p.init_mode != 0;
  v.loads = p.init_mode == 0 || p.init_mode == 1;
  return v;
}

Plugin* g_plugin = nullptr;

}  // namespace

extern "C" __attribute__((visibility("default"))) const kagzi_plugin*
kagzi_fuzz_current_descriptor() {
  if (g_current.entry_throws) throw std::runtime_error("entry throws");
  if (g_plugin == nullptr || g_plugin->entry_null) return nullptr;
  return &g_plugin->descriptor;
}

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  (void)kagzi::InitLogging("off");
  // A directory the loader accepts (ours, mode 0755) holding only the
  // plugin file (mode 0644), whatever the build's umask.
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/kagzi-fuzz-plugin-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  g_plugin_dir = pattern;
  fs::permissions(g_plugin_dir, fs::perms(0755));
  const fs::path target = fs::path(g_plugin_dir) / "descriptor_plugin.so";
  fs::copy_file(KAGZI_FUZZ_DESCRIPTOR_PLUGIN, target);
  fs::permissions(target, fs::perms(0644));
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(g_plugin_dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (g_plugin_dir.empty()) LLVMFuzzerInitialize(nullptr, nullptr);
  FuzzInput in(data, size);
  auto plugin = std::make_unique<Plugin>();
  g_current = Current{};
  Build(in, plugin.get());
  g_plugin = plugin.get();
  const Verdict expected = Expected(*plugin);

  kagzi::daemon::PluginRegistry registry;
  kagzi::daemon::ScanReport report = registry.Scan(g_plugin_dir);
  FUZZ_CHECK(report.directory_error.ok(), report.directory_error.message());
  FUZZ_CHECK(
      report.loaded_paths.size() + report.refusals.size() == 1,
      fmt::format("{} loaded, {} refused", report.loaded_paths.size(), report.refusals.size()));
  const std::string reason = report.refusals.empty() ? "" : report.refusals[0].reason;
  FUZZ_CHECK(
      report.loaded_paths.size() == (expected.loads ? 1u : 0u),
      fmt::format("expected {}, refusal: {}", expected.loads ? "a load" : "a refusal", reason));
  FUZZ_CHECK(g_current.init_calls == (expected.init_called ? 1 : 0),
             fmt::format("init called {} times; refusal: {}", g_current.init_calls, reason));
  if (!report.refusals.empty()) {
    FUZZ_CHECK(!reason.empty(), "empty refusal reason");
    FUZZ_CHECK(kagzi::IsValidUtf8(reason), reason);
    FUZZ_CHECK(!kagzi::fuzz::HasControlBytes(reason), reason);
  } else {
    FUZZ_CHECK(registry.LoadedKeys().size() == plugin->descriptor.workflow_count,
               fmt::format("{} of {} workflows registered", registry.LoadedKeys().size(),
                           plugin->descriptor.workflow_count));
  }
  registry.Deinit();
  g_plugin = nullptr;
  return 0;
}
