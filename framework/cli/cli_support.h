#pragma once
// What the `mcompress` commands share: exit codes, the options every command
// takes, loading plugins, and logging runs to the tracking store.
#include <boost/program_options.hpp>

#include <filesystem>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mcompress {
class Logger;
class PluginHost;
struct Comparison;
struct RunLogRequest;
}  // namespace mcompress

namespace mcompress::cli {

namespace po = boost::program_options;
namespace fs = std::filesystem;

// Exit codes (documented in the README).
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;      // a stage or the run failed
constexpr int kExitBadInput = 2;    // usage error, invalid recipe, refused plugins
constexpr int kExitGateStop = 3;    // a quality gate with on_fail: stop

// Where `run` and `compare` log their runs (docs/tracking.md).
struct TrackingOptions {
  std::string mlruns;
  bool disabled = false;
};


void add_tracking(po::options_description& desc, TrackingOptions& tracking);

// A store that cannot be written costs the run its record, never its result
// or exit code: the run directory holds everything.
void track_run(const TrackingOptions& tracking, const mcompress::RunLogRequest& request, mcompress::Logger& log);

struct CommonOptions {
  std::vector<std::string> plugin_dirs;
  bool quiet = false;
  bool json = false;
};

void add_common(po::options_description& desc, CommonOptions& common);

po::variables_map parse(const std::vector<std::string>& args, const po::options_description& desc,
                        const po::positional_options_description& positional);

// Parses a command whose one positional argument `name` fills `value`.
// Returns the exit code when there is nothing to run: the usage was printed
// for --help (0) or because `value` is missing (2).
std::optional<int> parse_single_positional(const std::vector<std::string>& args, const po::options_description& desc,
                                           const char* name, const std::string& value);

std::unique_ptr<mcompress::PluginHost> load_plugins(const CommonOptions& common);

void print_refusals(const mcompress::PluginHost& host, std::ostream& out);

bool is_inside_or_same(const fs::path& path, const fs::path& place);

// A plugin path the user named with --plugin-dir is one they expect to be
// used: if it is missing, or a library in it is refused, running without it
// would silently run something else, so `run` and `compare` stop (exit 2)
// and say which library was refused and why. Refusals elsewhere on the search
// path only matter when a recipe needs a pass they would have provided.
bool refuse_unusable_plugin_dirs(const mcompress::PluginHost& host, const CommonOptions& common);

// The ranked comparison on stdout: a table, or JSON with --json.
void print_comparison(const mcompress::Comparison& comparison, const fs::path& dir, bool json);

}  // namespace mcompress::cli
