// Plugin host: finds workflow plugins in plugin_dir, checks them, loads them
// and keeps the registry of (workflow, version) -> run function.
//
// A plugin is refused, loudly and alone, when its file is unsafe (not a
// regular file, group/world-writable, owned by someone other than root or
// this process's user, in an unsafe directory), is not an ELF file, fails
// dlopen, lacks kagzi_plugin_entry, speaks another ABI major or a newer
// minor, has malformed descriptors, duplicates a loaded (workflow, version),
// or its init fails. Refusals name the file and the most fundamental reason
// first; the daemon keeps serving the plugins that loaded. Libraries are
// opened with RTLD_NOW | RTLD_LOCAL and never dlclose()d: a run may be
// pinned to any version loaded, for the life of the process.
//
// Thread safety: Scan() is called from one thread at a time (start-up and
// SIGHUP); Find() and Loaded() may be called concurrently with it.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kagzi/core/store.h"
#include <kagzi/plugin.h>

namespace kagzi::daemon {

struct LoadedWorkflowEntry {
  WorkflowKey key;
  const kagzi_workflow* descriptor = nullptr;  // owned by the plugin, static
  std::uint64_t timeout_ms = 0;                // ABI 1.1 default deadline (0: none)
  std::string plugin_path;
  std::string plugin_name;
};

struct PluginRefusal {
  std::string path;
  std::string reason;
  // "plugin \"<path>\" refused: <reason>"
  std::string ToString() const;
};

struct ScanReport {
  std::vector<std::string> loaded_paths;  // newly loaded by this scan
  std::vector<PluginRefusal> refusals;
  Status directory_error;  // the directory itself was unusable
};

class PluginRegistry {
 public:
  PluginRegistry() = default;
  PluginRegistry(const PluginRegistry&) = delete;
  PluginRegistry& operator=(const PluginRegistry&) = delete;

  // Loads every not-yet-loaded "*.so" in dir (in name order). Files loaded
  // by an earlier scan (same path, inode and mtime) are skipped. Calls
  // each new plugin's init(). Logs every load and refusal.
  ScanReport Scan(const std::string& dir);

  // The workflow for a run pinned to key; nullopt if not loaded.
  std::optional<LoadedWorkflowEntry> Find(const WorkflowKey& key) const;
  std::vector<LoadedWorkflowEntry> Loaded() const;
  std::vector<WorkflowKey> LoadedKeys() const;

  // Calls deinit() of every loaded plugin once (shutdown, after all runs).
  void Deinit();

  // Whether loads and refusals are logged at info/error (the default) or
  // only at trace: every worker process loads the same plugins, and one of
  // them reporting is enough.
  void SetReporting(bool report) { report_ = report; }

 private:
  struct Plugin {
    std::string path;
    const kagzi_plugin* descriptor;
  };
  // Checks and loads one file; returns the refusal reason on failure.
  std::optional<std::string> LoadOne(const std::string& path, bool dir_checked);

  bool report_ = true;
  mutable std::mutex mu_;
  std::vector<Plugin> plugins_;                 // guarded by mu_
  std::vector<LoadedWorkflowEntry> workflows_;  // guarded by mu_
  std::set<std::string> seen_files_;            // "path|inode|mtime", guarded by mu_
};

}  // namespace kagzi::daemon
