#include "mcompress/framework/loader/plugin_host.h"

#include <dlfcn.h>
#include <torch/version.h>

#include <boost/dll/shared_library.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>

#include "mcompress/framework/loader/file_trust.h"
#include "mcompress/framework/probes/probes.h"
#include "mcompress/framework/support/sha256.h"
#include "mcompress/sdk/error.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/sdk/plugin_abi.h"
#include "mcompress/sdk/plugin_compatibility.h"

namespace mcompress {
namespace {

// Never destroyed: a plugin's code must stay mapped as long as any object,
// vtable or deleter it produced may be used, i.e. until the process exits.
std::vector<boost::dll::shared_library>& loaded_libraries() {
  static auto* libraries = new std::vector<boost::dll::shared_library>();
  return *libraries;
}

std::filesystem::path executable_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : exe.parent_path();
}

const char* text_or(const char* s, const char* fallback) { return s ? s : fallback; }

// Collects what a plugin registers, so a plugin whose names clash, or whose
// register function fails, is refused as a whole.
class StagingRegistry final : public PassRegistry {
 public:
  void add(std::unique_ptr<Pass> pass) override {
    if (pass) passes.push_back(std::move(pass));
  }
  void add_probe(std::unique_ptr<Probe> probe) override {
    if (probe) probes.push_back(std::move(probe));
  }
  void fail(const std::string& message) override {
    if (failure.empty()) failure = message;
  }
  std::vector<std::unique_ptr<Pass>> passes;
  std::vector<std::unique_ptr<Probe>> probes;
  std::string failure;
};

// What a refused plugin registered is kept, never destroyed: destroying it
// would run the plugin's code once more, and its library stays loaded anyway.
void retire(StagingRegistry& staging) {
  static auto* retired = new std::vector<std::unique_ptr<StagingRegistry>>();
  retired->push_back(std::make_unique<StagingRegistry>(std::move(staging)));
}

// The name a plugin gives twice among its own passes (or probes), if any.
template <typename Objects>
std::string repeated_name(const Objects& objects) {
  std::set<std::string> seen;
  for (const auto& object : objects) {
    if (!seen.insert(object->info().name).second) return object->info().name;
  }
  return {};
}

}  // namespace

PluginHost::PluginHost() = default;
PluginHost::~PluginHost() = default;

std::vector<std::filesystem::path> PluginHost::search_path(
    const std::vector<std::filesystem::path>& extra_dirs) {
  std::vector<std::filesystem::path> dirs;
  const auto installed = executable_dir() / ".." / MCOMPRESS_PLUGIN_INSTALL_DIR;
  std::error_code ec;
  if (std::filesystem::is_directory(installed, ec)) {
    dirs.push_back(std::filesystem::weakly_canonical(installed, ec));
  } else {
    dirs.emplace_back(MCOMPRESS_PLUGIN_BUILD_DIR);
  }
  if (const char* env = std::getenv("MCOMPRESS_PLUGIN_PATH")) {
    std::string value = env;
    size_t start = 0;
    while (start <= value.size()) {
      size_t colon = value.find(':', start);
      if (colon == std::string::npos) colon = value.size();
      if (colon > start) dirs.emplace_back(value.substr(start, colon - start));
      start = colon + 1;
    }
  }
  dirs.insert(dirs.end(), extra_dirs.begin(), extra_dirs.end());
  return dirs;
}

void PluginHost::load_directories(const std::vector<std::filesystem::path>& dirs) {
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(dir, ec)) {
      load_file(dir);
      continue;
    }
    if (!std::filesystem::is_directory(dir, ec)) continue;
    // Whoever can write the directory can put a library into it.
    if (std::string why = writable_by_others_problem(dir); !why.empty()) {
      refusals_.push_back({dir.string(), "plugin directory refused: " + why, false});
      continue;
    }
    std::vector<std::filesystem::path> libraries;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".so") libraries.push_back(entry.path());
    }
    std::sort(libraries.begin(), libraries.end());
    for (const auto& library : libraries) load_file(library);
  }
}

bool PluginHost::load_file(const std::filesystem::path& library) {
  const std::string path = library.string();
  auto refuse = [&](const std::string& why, bool duplicate = false) {
    refusals_.push_back({path, why, duplicate});
    return false;
  };
  std::error_code ec_equivalent;
  for (const auto& p : plugins_) {
    if (std::filesystem::equivalent(p.path, library, ec_equivalent)) return true;  // same file seen twice
  }
  if (std::string why = writable_by_others_problem(library); !why.empty()) return refuse(why);
  // An absolute path, so dlopen never searches LD_LIBRARY_PATH or the system
  // folders for a bare file name.
  std::error_code ec_absolute;
  const std::string load_path = std::filesystem::absolute(library, ec_absolute).lexically_normal().string();
  // Hashed before loading: the record names the bytes that were mapped.
  std::string sha256;
  try {
    sha256 = sha256_file_hex(load_path);
  } catch (const std::exception& e) {
    return refuse(e.what());
  }

  // dlopen first for the loader's own message (missing dependency, wrong ELF class...).
  void* probe = dlopen(load_path.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (!probe) return refuse(fmt::format("not a loadable shared library ({})", dlerror()));
  boost::dll::shared_library lib;
  boost::dll::fs::error_code ec;
  lib.load(boost::dll::fs::path(load_path), boost::dll::load_mode::rtld_lazy, ec);
  dlclose(probe);  // `lib` holds its own reference
  if (ec) return refuse(fmt::format("not a loadable shared library ({})", ec.message()));
  if (!lib.has(MCOMPRESS_PLUGIN_ENTRY_SYMBOL)) {
    return refuse(fmt::format("not an mcompress plugin: it exports no '{}' symbol (declare it with "
                              "MCOMPRESS_PLUGIN from <mcompress/sdk/plugin.h>)",
                              MCOMPRESS_PLUGIN_ENTRY_SYMBOL));
  }
  auto& entry = lib.get_alias<const mcompress_plugin_info*()>(MCOMPRESS_PLUGIN_ENTRY_SYMBOL);
  const mcompress_plugin_info* info = entry();
  if (std::string why = plugin_incompatibility(info); !why.empty()) return refuse(why);

  // From here on the plugin's code has run: its library stays loaded whatever
  // is decided, because anything it registered may point into it.
  loaded_libraries().push_back(lib);
  StagingRegistry staging;
  auto refuse_registered = [&](const std::string& why, bool duplicate = false) {
    retire(staging);
    return refuse(why, duplicate);
  };
  try {
    info->register_passes(&staging);
  } catch (...) {
    // A plugin built for SDK 1.0 lets its register function's exceptions out.
    staging.fail(current_exception_message());
  }
  if (!staging.failure.empty()) {
    return refuse_registered(fmt::format("plugin '{}' failed to register its passes: {}",
                                         info->plugin_name, staging.failure));
  }
  std::string clash;
  try {
    clash = registration_clash(staging.passes, staging.probes, info->plugin_name);
  } catch (...) {
    return refuse_registered(fmt::format("plugin '{}' failed to describe its passes: {}",
                                         info->plugin_name, current_exception_message()));
  }
  if (!clash.empty()) return refuse_registered(clash, true);

  PluginRecord record{path,
                      info->plugin_name,
                      text_or(info->plugin_version, ""),
                      info->sdk_major,
                      info->sdk_minor,
                      text_or(info->torch_version, ""),
                      text_or(info->cxx_abi, ""),
                      text_or(info->compiler, ""),
                      {},
                      {},
                      sha256};
  const size_t index = plugins_.size();
  for (auto& pass : staging.passes) {
    const std::string name = pass->info().name;
    record.passes.push_back(name);
    passes_[name] = Entry{std::move(pass), index};
  }
  for (auto& probe : staging.probes) {
    const std::string name = probe->info().name;
    record.probes.push_back(name);
    probes_[name] = ProbeEntry{std::move(probe), index};
  }
  plugins_.push_back(std::move(record));
  return true;
}

std::string PluginHost::registration_clash(const std::vector<std::unique_ptr<Pass>>& passes,
                                           const std::vector<std::unique_ptr<Probe>>& probes,
                                           const std::string& plugin) const {
  if (std::string name = repeated_name(passes); !name.empty()) {
    return fmt::format("plugin '{}' registers two passes named '{}'; give each pass its own name",
                       plugin, name);
  }
  if (std::string name = repeated_name(probes); !name.empty()) {
    return fmt::format("plugin '{}' registers two probes named '{}'; give each probe its own name",
                       plugin, name);
  }
  for (const auto& pass : passes) {
    const std::string& name = pass->info().name;
    if (const auto* existing = plugin_of(name)) {
      return fmt::format("pass '{}' of plugin '{}' is already provided by {} (plugin '{}'); "
                         "remove one of the two libraries from the plugin path",
                         name, plugin, existing->path, existing->name);
    }
  }
  for (const auto& probe : probes) {
    const std::string& name = probe->info().name;
    if (is_builtin_probe(name)) {
      return fmt::format("probe '{}' of plugin '{}' has the name of a built-in probe; rename it", name,
                         plugin);
    }
    if (const auto* existing = plugin_of_probe(name)) {
      return fmt::format("probe '{}' of plugin '{}' is already provided by {} (plugin '{}'); "
                         "remove one of the two libraries from the plugin path",
                         name, plugin, existing->path, existing->name);
    }
  }
  return {};
}

const void* PluginHost::pass_extension(const std::string& pass_name, const char* id) const {
  const Pass* pass = find_pass(pass_name);
  const PluginRecord* plugin = plugin_of(pass_name);
  // Passes built for SDK 1.0 have no extension slot in their vtable.
  if (!pass || !plugin || plugin->sdk_minor < 1) return nullptr;
  return pass->extension(id);
}

void PluginHost::add_builtin_pass(std::unique_ptr<Pass> pass) {
  const std::string name = pass->info().name;
  if (const auto* existing = plugin_of(name)) {
    throw Error(fmt::format("pass '{}' of {} has the name of a built-in pass; rename it", name, existing->path));
  }
  auto builtin = std::find_if(plugins_.begin(), plugins_.end(), [](const PluginRecord& p) { return p.path == "<built-in>"; });
  if (builtin == plugins_.end()) {
    plugins_.push_back({"<built-in>", "mcompress", MCOMPRESS_VERSION_STRING, MCOMPRESS_SDK_VERSION_MAJOR,
                        MCOMPRESS_SDK_VERSION_MINOR, TORCH_VERSION, MCOMPRESS_CXX_ABI_TAG, MCOMPRESS_COMPILER_ID, {}, {}, {}});
    builtin = plugins_.end() - 1;
  }
  builtin->passes.push_back(name);
  passes_[name] = Entry{std::move(pass), static_cast<size_t>(builtin - plugins_.begin())};
}

const Pass* PluginHost::find_pass(const std::string& name) const {
  auto it = passes_.find(name);
  return it == passes_.end() ? nullptr : it->second.pass.get();
}

const PluginRecord* PluginHost::plugin_of(const std::string& pass_name) const {
  auto it = passes_.find(pass_name);
  return it == passes_.end() ? nullptr : &plugins_[it->second.plugin_index];
}

const PassInfo* PluginHost::find(const std::string& name) const {
  const Pass* pass = find_pass(name);
  return pass ? &pass->info() : nullptr;
}

std::vector<std::string> PluginHost::names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : passes_) out.push_back(name);
  return out;
}

std::vector<std::string> PluginHost::probe_names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : probes_) out.push_back(name);
  return out;
}

const Probe* PluginHost::find_probe(const std::string& name) const {
  auto it = probes_.find(name);
  return it == probes_.end() ? nullptr : it->second.probe.get();
}

const PluginRecord* PluginHost::plugin_of_probe(const std::string& probe_name) const {
  auto it = probes_.find(probe_name);
  return it == probes_.end() ? nullptr : &plugins_[it->second.plugin_index];
}

std::vector<LibraryFile> PluginHost::library_files() const {
  std::vector<LibraryFile> files = mcompress_core_libraries();
  for (const auto& plugin : plugins_) {
    if (plugin.sha256.empty()) continue;  // built-in passes live in the executable
    std::error_code ec;
    const auto absolute = std::filesystem::absolute(plugin.path, ec).lexically_normal();
    files.push_back({"plugin", absolute.string(), plugin.sha256});
  }
  return files;
}

bool PluginHost::has_duplicate_passes() const {
  return std::any_of(refusals_.begin(), refusals_.end(),
                     [](const PluginRefusal& r) { return r.duplicate_pass; });
}

}  // namespace mcompress
