// Plugin loading and the ABI checks. The order of checks follows
// PostgreSQL's PG_MODULE_MAGIC: the most fundamental mismatch is reported
// first (file safety, ELF, symbol, ABI major, minor, then descriptors).
#include "plugin_host.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "kagzi/core/log.h"
#include "kagzi/core/validation.h"

namespace kagzi::daemon {
namespace {

constexpr std::uint32_t kMaxWorkflowsPerPlugin = 4096;

std::optional<std::string> CheckOwnerAndMode(const struct stat& st, std::string_view what) {
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    return fmt::format("{} is group- or world-writable (mode {:04o}); run chmod go-w", what,
                       st.st_mode & 07777);
  }
  uid_t me = geteuid();
  if (st.st_uid != 0 && st.st_uid != me) {
    return fmt::format("{} is owned by uid {}, not by root or by kagzid's user (uid {})", what,
                       st.st_uid, me);
  }
  return std::nullopt;
}

std::optional<std::string> CheckString(const char* s, std::string_view what) {
  if (s == nullptr) return fmt::format("{} is NULL", what);
  // Bounded scan: never walk past a sane length looking for the NUL.
  std::size_t len = strnlen(s, kMaxNameBytes + 1);
  Status st = ValidateName(std::string_view(s, len), what);
  if (!st.ok()) return st.message();
  return std::nullopt;
}

}  // namespace

std::string PluginRefusal::ToString() const {
  return fmt::format("plugin \"{}\" refused: {}", path, reason);
}

ScanReport PluginRegistry::Scan(const std::string& dir) {
  auto log = Logger("plugins");
  ScanReport report;
  struct stat dst {};
  if (::stat(dir.c_str(), &dst) != 0) {
    report.directory_error =
        Status::InvalidArgument("plugin_dir \"{}\" cannot be read: {}", dir, std::strerror(errno));
  } else if (!S_ISDIR(dst.st_mode)) {
    report.directory_error = Status::InvalidArgument("plugin_dir \"{}\" is not a directory", dir);
  } else if (auto bad = CheckOwnerAndMode(dst, "the directory")) {
    report.directory_error = Status::InvalidArgument("plugin_dir \"{}\" is unsafe: {}", dir, *bad);
  }
  if (!report.directory_error.ok()) {
    log->error("{}; no plugins loaded from it", report.directory_error.message());
    return report;
  }

  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const auto& p = entry.path();
    if (p.extension() == ".so" && !p.filename().string().starts_with(".")) {
      files.push_back(p.string());
    }
  }
  if (ec) {
    report.directory_error =
        Status::InvalidArgument("plugin_dir \"{}\" cannot be listed: {}", dir, ec.message());
    log->error("{}", report.directory_error.message());
    return report;
  }
  std::sort(files.begin(), files.end());

  for (const auto& path : files) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      report.refusals.push_back({path, fmt::format("cannot stat: {}", std::strerror(errno))});
      log->log(report_ ? spdlog::level::err : spdlog::level::trace, "{}",
               report.refusals.back().ToString());
      continue;
    }
    std::string identity = fmt::format("{}|{}|{}", path, st.st_ino, st.st_mtim.tv_sec);
    {
      std::lock_guard lock(mu_);
      if (seen_files_.contains(identity)) continue;
      seen_files_.insert(identity);
    }
    if (auto reason = LoadOne(path, true)) {
      report.refusals.push_back({path, *reason});
      log->log(report_ ? spdlog::level::err : spdlog::level::trace, "{}",
               report.refusals.back().ToString());
    } else {
      report.loaded_paths.push_back(path);
    }
  }
  return report;
}

std::optional<std::string> PluginRegistry::LoadOne(const std::string& path, bool /*dir_checked*/) {
  auto log = Logger("plugins");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fmt::format("cannot stat: {}", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if (auto bad = CheckOwnerAndMode(st, "the file")) return bad;

  {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    in.read(magic, 4);
    if (in.gcount() != 4 || std::memcmp(magic,
                                        "\x7f"
                                        "ELF",
                                        4) != 0) {
      return "not an ELF shared object";
    }
  }

  // Never dlclose: a refused plugin's handle is leaked on purpose too, since
  // its init or static constructors may have left state behind.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    return fmt::format("dlopen failed: {}", err ? err : "unknown error");
  }
  dlerror();
  void* sym = dlsym(handle, KAGZI_PLUGIN_ENTRY_SYMBOL);
  if (sym == nullptr) {
    return fmt::format(
        "no {} symbol: not a Kagzi plugin, or built without the SDK's "
        "export rules",
        KAGZI_PLUGIN_ENTRY_SYMBOL);
  }
  kagzi_plugin_entry_fn entry = nullptr;
  static_assert(sizeof(entry) == sizeof(sym));
  std::memcpy(&entry, &sym, sizeof(entry));

  const kagzi_plugin* plugin = nullptr;
  try {
    plugin = entry(KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR);
  } catch (...) {
    return fmt::format("{} threw a C++ exception across the C ABI", KAGZI_PLUGIN_ENTRY_SYMBOL);
  }
  if (plugin == nullptr) {
    return fmt::format("{} returned NULL (the plugin declined host ABI {}.{})",
                       KAGZI_PLUGIN_ENTRY_SYMBOL, KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR);
  }
  if (plugin->abi_major != KAGZI_ABI_MAJOR) {
    return fmt::format("ABI {}.{}, host speaks {}.x", plugin->abi_major, plugin->abi_minor,
                       KAGZI_ABI_MAJOR);
  }
  if (plugin->abi_minor > KAGZI_ABI_MINOR) {
    return fmt::format("ABI {}.{} is newer than this host's ABI {}.{}; upgrade kagzid",
                       plugin->abi_major, plugin->abi_minor, KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR);
  }
  if (plugin->struct_size < sizeof(kagzi_plugin)) {
    return fmt::format("plugin descriptor struct_size {} is smaller than ABI {}.{}'s {}",
                       plugin->struct_size, plugin->abi_major, plugin->abi_minor,
                       sizeof(kagzi_plugin));
  }
  if (auto bad = CheckString(plugin->name, "plugin name")) return bad;
  std::string plugin_name(plugin->name);
  if (auto bad = CheckString(plugin->version, "plugin version")) return bad;
  if (plugin->reserved0 != 0) return "plugin descriptor reserved0 is not 0";
  if (plugin->workflow_count == 0) return "declares no workflows";
  if (plugin->workflow_count > kMaxWorkflowsPerPlugin) {
    return fmt::format("declares {} workflows, more than the limit of {}", plugin->workflow_count,
                       kMaxWorkflowsPerPlugin);
  }
  if (plugin->workflows == nullptr) {
    return fmt::format("declares {} workflows but the workflow array is NULL",
                       plugin->workflow_count);
  }

  // ABI 1.0 workflow descriptors end at user_data; later minors append
  // fields. Step through the array by the plugin's own struct_size, so a
  // plugin built against an older minor loads unchanged.
  constexpr std::size_t kWorkflowSize10 = offsetof(kagzi_workflow, timeout_ms);
  const std::uint32_t stride = plugin->workflows[0].struct_size;
  if (stride < kWorkflowSize10 || stride % alignof(kagzi_workflow) != 0 || stride > 4096) {
    return fmt::format("workflow #0: struct_size {} is not a valid size (ABI 1.0's is {})", stride,
                       kWorkflowSize10);
  }
  const auto* base = reinterpret_cast<const char*>(plugin->workflows);
  std::vector<LoadedWorkflowEntry> entries;
  for (std::uint32_t i = 0; i < plugin->workflow_count; ++i) {
    const auto& wf = *reinterpret_cast<const kagzi_workflow*>(base + std::size_t{i} * stride);
    std::string where = fmt::format("workflow #{}", i);
    if (wf.struct_size != stride) {
      return fmt::format("{}: struct_size {} differs from workflow #0's {}", where, wf.struct_size,
                         stride);
    }
    if (wf.abi_major != KAGZI_ABI_MAJOR) {
      return fmt::format("{}: ABI {}.{}, host speaks {}.x", where, wf.abi_major, wf.abi_minor,
                         KAGZI_ABI_MAJOR);
    }
    if (wf.abi_minor > KAGZI_ABI_MINOR) {
      return fmt::format("{}: ABI {}.{} is newer than this host's ABI {}.{}", where, wf.abi_major,
                         wf.abi_minor, KAGZI_ABI_MAJOR, KAGZI_ABI_MINOR);
    }
    if (wf.abi_minor >= 1 && wf.struct_size < sizeof(kagzi_workflow)) {
      return fmt::format("{}: struct_size {} is smaller than ABI {}.{}'s {}", where, wf.struct_size,
                         wf.abi_major, wf.abi_minor, sizeof(kagzi_workflow));
    }
    if (auto bad = CheckString(wf.name, where + " name")) return bad;
    where = fmt::format("workflow \"{}\"", wf.name);
    if (wf.reserved0 != 0) return fmt::format("{}: reserved0 is not 0", where);
    if (wf.version < 1) return fmt::format("{}: version must be >= 1", where);
    // The registry and the runs table hold versions as PostgreSQL integer.
    if (wf.version > static_cast<std::uint32_t>(std::numeric_limits<std::int32_t>::max())) {
      return fmt::format("{}: version {} is larger than the maximum {}", where, wf.version,
                         std::numeric_limits<std::int32_t>::max());
    }
    if (wf.run == nullptr)
      return fmt::format("{} version {}: run function is NULL", where, wf.version);
    WorkflowKey key{wf.name, static_cast<int>(wf.version)};
    for (const auto& e : entries) {
      if (e.key == key) {
        return fmt::format("{} version {} is declared twice", where, wf.version);
      }
    }
    const std::uint64_t timeout_ms = wf.struct_size >= sizeof(kagzi_workflow) ? wf.timeout_ms : 0;
    entries.push_back({key, &wf, timeout_ms, path, plugin_name});
  }
  {
    std::lock_guard lock(mu_);
    for (const auto& e : entries) {
      for (const auto& w : workflows_) {
        if (w.key == e.key) {
          return fmt::format("workflow \"{}\" version {} is already loaded from \"{}\"", e.key.name,
                             e.key.version, w.plugin_path);
        }
      }
    }
  }
  if (plugin->init != nullptr) {
    kagzi_status init_status = KAGZI_ERR_PERMANENT;
    try {
      init_status = plugin->init();
    } catch (...) {
      return "init() threw a C++ exception across the C ABI";
    }
    if (init_status != KAGZI_OK) return fmt::format("init() returned status {}", init_status);
  }
  std::lock_guard lock(mu_);
  plugins_.push_back({path, plugin});
  for (const auto& e : entries) {
    workflows_.push_back(e);
    log->log(report_ ? spdlog::level::info : spdlog::level::trace,
             "loaded workflow \"{}\" version {} from plugin \"{}\" {} ({})", e.key.name,
             e.key.version, plugin_name, plugin->version, path);
  }
  return std::nullopt;
}

std::optional<LoadedWorkflowEntry> PluginRegistry::Find(const WorkflowKey& key) const {
  std::lock_guard lock(mu_);
  for (const auto& w : workflows_) {
    if (w.key == key) return w;
  }
  return std::nullopt;
}

std::vector<LoadedWorkflowEntry> PluginRegistry::Loaded() const {
  std::lock_guard lock(mu_);
  return workflows_;
}

std::vector<WorkflowKey> PluginRegistry::LoadedKeys() const {
  std::lock_guard lock(mu_);
  std::vector<WorkflowKey> keys;
  for (const auto& w : workflows_) keys.push_back(w.key);
  return keys;
}

void PluginRegistry::Deinit() {
  std::lock_guard lock(mu_);
  for (const auto& p : plugins_) {
    if (p.descriptor->deinit != nullptr) {
      try {
        p.descriptor->deinit();
      } catch (...) {
        Logger("plugins")->error("plugin \"{}\": deinit() threw a C++ exception", p.path);
      }
    }
  }
  plugins_.clear();
}

}  // namespace kagzi::daemon
