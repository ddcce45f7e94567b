#pragma once
// Finds, checks and loads pass plugins. The C entry point of each library is
// checked (SDK version, LibTorch version, C++ ABI) before any C++ object
// crosses the boundary; loaded libraries stay loaded for the process lifetime.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mcompress/framework/loader/library_inventory.h"
#include "mcompress/framework/recipe/recipe.h"

namespace mcompress {

class Pass;
class Probe;

struct PluginRecord {
  std::string path;
  std::string name;
  std::string version;
  int sdk_major = 0;
  int sdk_minor = 0;
  std::string torch_version;
  std::string cxx_abi;
  std::string compiler;
  std::vector<std::string> passes;
  std::vector<std::string> probes;
  std::string sha256;  // of the library file as it was loaded; empty for built-in passes
};

// A library that was not loaded, or a pass that clashed with one already loaded.
struct PluginRefusal {
  std::string path;
  std::string reason;  // names what the file was built with and what the host needs
  bool duplicate_pass = false;
};

class PluginHost final : public PassCatalog {
 public:
  PluginHost();
  ~PluginHost() override;
  PluginHost(const PluginHost&) = delete;
  PluginHost& operator=(const PluginHost&) = delete;

  // The plugin search path: the in-tree build's plugin folder (or the
  // installed one next to the executable), then MCOMPRESS_PLUGIN_PATH
  // (colon-separated; empty entries ignored, so never the current directory
  // implicitly), then `extra_dirs` (--plugin-dir) in order.
  static std::vector<std::filesystem::path> search_path(
      const std::vector<std::filesystem::path>& extra_dirs);

  // Loads every *.so in each directory (sorted by name); a path that names a
  // file loads that file; missing directories are skipped. A directory that
  // others may write is refused as a whole. Problems become refusals, never
  // exceptions.
  void load_directories(const std::vector<std::filesystem::path>& dirs);
  // Returns true if the library was loaded and all its passes registered.
  // Refuses a file that others may write (see SECURITY.md).
  bool load_file(const std::filesystem::path& library);

  // Registers a pass the host itself provides (plugin "mcompress", path
  // "<built-in>"); throws mcompress::Error if the name is taken.
  void add_builtin_pass(std::unique_ptr<Pass> pass);

  const Pass* find_pass(const std::string& name) const;
  // The extension `id` (mcompress/sdk/pass_extensions.h) of a loaded pass, or
  // nullptr: also for passes of plugins built for SDK 1.0, which cannot have one.
  const void* pass_extension(const std::string& pass_name, const char* id) const;
  // The plugin that provides a pass (for error messages and run records).
  const PluginRecord* plugin_of(const std::string& pass_name) const;

  const PassInfo* find(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::vector<std::string> probe_names() const override;
  const Probe* find_probe(const std::string& name) const;
  const PluginRecord* plugin_of_probe(const std::string& probe_name) const;

  const std::vector<PluginRecord>& plugins() const { return plugins_; }
  const std::vector<PluginRefusal>& refusals() const { return refusals_; }
  bool has_duplicate_passes() const;
  // Every library whose code this process runs: the executable, the mcompress
  // libraries, then each loaded plugin, with absolute path and SHA-256.
  std::vector<LibraryFile> library_files() const;

 private:
  // Why what a plugin registered cannot be added (empty if it can): a name
  // it uses twice, or one that is already taken.
  std::string registration_clash(const std::vector<std::unique_ptr<Pass>>& passes,
                                 const std::vector<std::unique_ptr<Probe>>& probes,
                                 const std::string& plugin) const;

  struct Entry {
    std::unique_ptr<Pass> pass;
    size_t plugin_index;
  };
  std::vector<PluginRecord> plugins_;
  std::vector<PluginRefusal> refusals_;
  std::map<std::string, Entry> passes_;
  struct ProbeEntry {
    std::unique_ptr<Probe> probe;
    size_t plugin_index;
  };
  std::map<std::string, ProbeEntry> probes_;
};

}  // namespace mcompress
