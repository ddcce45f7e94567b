// The plugin boundary against plugins that break its rules, built out of tree
// against the installed SDK (tests/hostile_plugins/, built by a ctest
// fixture before these tests): whatever a pass or probe
// throws, whatever model it returns, whatever its registration does, the host
// keeps going, writes its records and says what happened. Plugins built for
// the previous SDK minor load and run.
#include <gtest/gtest.h>

#include <filesystem>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

// The installation and the hostile plugins built against it, by the ctest
// fixture that runs tests/hostile_plugins/build_against_install.sh first.
class PluginBoundary : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(plugin_dir("passes")))
        << "run tests/hostile_plugins/build_against_install.sh (ctest does, as a fixture)";
  }

  static fs::path root() { return MCOMPRESS_HOSTILE_DIR; }
  static std::string cli() { return (root() / "prefix/bin/mcompress").string(); }
  static fs::path plugin_dir(const std::string& folder) { return root() / "build/plugins" / folder; }

  struct Run {
    mcompress::testing::CommandResult result;
    fs::path dir;
  };

  // A small recipe on the zoo MLP and Fashion-MNIST, run by the installed host
  // with the plugins of `folder`.
  static Run run(const TempDir& tmp, const std::string& stages, const std::string& flags = "",
                 const std::string& probes = "[accuracy, params]", const std::string& folder = "passes") {
    write_text(tmp.path() / "recipe.yaml", std::string(R"(mcompress: 1
name: boundary
seed: 5
threads: 1
model:
  zoo: mlp
  options: {width: 16}
data:
  path: )") + MCOMPRESS_FASHION_MNIST_DIR + R"(
  train_limit: 1000
  eval_limit: 200
  validation_size: 200
probes:
  enabled: )" + probes + "\nstages:\n" + stages);
    const fs::path out = tmp.path() / "run";
    return {run_command(cli() + " run " + (tmp.path() / "recipe.yaml").string() + " --quiet --no-tracking --out " +
                        out.string() + " --plugin-dir " + plugin_dir(folder).string() + " " + flags),
            out};
  }

  static nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(read_text(path)); }

  // `mcompress plugins --json` with one hostile folder on the path.
  static nlohmann::json listing(const std::string& folder) {
    auto listed = run_command("( " + cli() + " plugins --json --plugin-dir " + plugin_dir(folder).string() +
                              " 2>/dev/null )");
    return nlohmann::json::parse(listed.output);
  }

  static std::string refusal_of(const nlohmann::json& listing, const std::string& library) {
    for (const auto& r : listing.at("refused")) {
      if (r.at("path").get<std::string>().find(library) != std::string::npos) return r.at("reason");
    }
    return {};
  }

};

// A failed stage: exit 1, its record says why, no model was kept for it, and
// the report and the baseline's model are there.
void expect_failed_stage(const fs::path& run_dir, const mcompress::testing::CommandResult& result,
                         const std::string& stage_dir, const std::string& why) {
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_EQ(result.output.find("terminate called"), std::string::npos) << result.output;
  ASSERT_TRUE(fs::exists(run_dir / "stages" / stage_dir / "record.json")) << result.output;
  const auto record = nlohmann::json::parse(read_text(run_dir / "stages" / stage_dir / "record.json"));
  EXPECT_EQ(record.at("outcome").at("status"), "failed");
  const std::string error = record.at("outcome").at("error");
  EXPECT_NE(error.find(why), std::string::npos) << error;
  EXPECT_NE(result.output.find(why), std::string::npos) << result.output;
  EXPECT_FALSE(fs::exists(run_dir / "stages" / stage_dir / "model.pt"));
  EXPECT_TRUE(fs::exists(run_dir / "stages/00_baseline/model.pt"));
  const auto report = nlohmann::json::parse(read_text(run_dir / "report.json"));
  EXPECT_EQ(report.at("status"), "failed");
}

struct Throwing {
  const char* pass;
  const char* isolate;
  const char* message;
};
void PrintTo(const Throwing& t, std::ostream* out) { *out << t.pass << (*t.isolate ? " --isolate" : ""); }

class ThrowingPass : public PluginBoundary, public ::testing::WithParamInterface<Throwing> {};

TEST_P(ThrowingPass, FailsItsStageWithItsRecordAndExitCode1) {
  TempDir tmp("throwing-pass");
  const auto run = this->run(tmp, std::string("  - name: hostile\n    pass: ") + GetParam().pass + "\n",
                             GetParam().isolate);
  expect_failed_stage(run.dir, run.result, "01_hostile",
                      std::string("(pass '") + GetParam().pass + "' from plugin 'hostile_passes' 1.0.0) failed: " +
                          GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    AnythingThrown, ThrowingPass,
    ::testing::Values(
        Throwing{"hostile_throw_int", "", "an exception of type 'int' (not a std::exception)"},
        Throwing{"hostile_throw_int", "--isolate", "an exception of type 'int' (not a std::exception)"},
        Throwing{"hostile_throw_foreign", "", "an exception of type 'ForeignError' (not a std::exception)"},
        Throwing{"hostile_throw_foreign", "--isolate",
                 "an exception of type 'ForeignError' (not a std::exception)"}),
    [](const auto& info) {
      return std::string(info.param.pass).substr(8) + (*info.param.isolate ? "_isolated" : "_in_process");
    });

TEST_F(PluginBoundary, AThrowingProbeFailsTheStageItMeasures) {
  for (const std::string isolate : {"", "--isolate"}) {
    TempDir tmp("throwing-probe");
    const auto run = this->run(tmp, "  - name: scale\n    pass: hostile_read_lent\n    teacher: original\n",
                               isolate, "[accuracy, hostile_probe_throws]");
    EXPECT_EQ(run.result.exit_code, 1) << run.result.output;
    // The baseline is the first stage it measures.
    const auto record = read_json(run.dir / "stages/00_baseline/record.json");
    EXPECT_EQ(record.at("outcome").at("status"), "failed");
    EXPECT_NE(record.at("outcome").at("error").get<std::string>().find(
                  "probe 'hostile_probe_throws' (plugin 'hostile_passes' 1.0.0) failed: an exception of type "
                  "'int'"),
              std::string::npos)
        << record.dump();
    EXPECT_EQ(read_json(run.dir / "report.json").at("status"), "failed");
    EXPECT_FALSE(fs::exists(run.dir / "stages/01_scale"));
  }
}

TEST_F(PluginBoundary, AModelThatCannotRunFailsItsStageAndThePreviousModelIsKept) {
  for (const std::string isolate : {"", "--isolate"}) {
    TempDir tmp("forward-throws");
    const auto run = this->run(tmp, "  - name: broken\n    pass: hostile_forward_throws\n", isolate);
    expect_failed_stage(run.dir, run.result, "01_broken",
                        "the model it returned does not run on the example input");
  }
}

TEST_F(PluginBoundary, AChangedOutputShapeFailsItsStageUnlessThePassDeclaresIt) {
  TempDir tmp("output-shape");
  const auto changed = run(tmp, "  - name: reshaped\n    pass: hostile_output_shape\n");
  expect_failed_stage(changed.dir, changed.result, "01_reshaped",
                      "gives an output of shape [1, 3] where the previous model's was [1, 10]");

  TempDir declared_tmp("declared-head");
  const auto declared = run(declared_tmp, "  - name: head\n    pass: hostile_new_head\n", "--isolate");
  ASSERT_EQ(declared.result.exit_code, 0) << declared.result.output;
  EXPECT_EQ(read_json(declared.dir / "stages/01_head/record.json").at("outcome").at("status"), "accepted");
}

TEST_F(PluginBoundary, ThePassesNeverChangeTheOriginalOrTheTeacherOfLaterStages) {
  for (const std::string isolate : {"", "--isolate"}) {
    TempDir tmp("lent-models");
    const auto run = this->run(tmp, R"(  - name: lender
    pass: hostile_lender
    teacher: previous
  - name: reader
    pass: hostile_read_lent
    teacher: original
)",
                               isolate);
    ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
    const auto lent = read_json(run.dir / "stages/01_lender/record.json").at("stats");
    const auto read = read_json(run.dir / "stages/02_reader/record.json").at("stats");
    EXPECT_GT(lent.at("original_sum").get<double>(), 0.0);
    // The lender zeroed what it was handed; the next stage sees the models intact.
    EXPECT_DOUBLE_EQ(read.at("original_sum").get<double>(), lent.at("original_sum").get<double>());
    EXPECT_DOUBLE_EQ(read.at("teacher_sum").get<double>(), lent.at("teacher_sum").get<double>());
  }
}

TEST_F(PluginBoundary, ARegisterFunctionThatThrowsGetsItsLibraryRefused) {
  for (const std::string folder : {"register_throws", "previous_minor_register_throws"}) {
    const auto listed = listing(folder);
    const std::string reason = refusal_of(listed, folder + ".so");
    EXPECT_NE(reason.find("failed to register its passes: an exception of type 'int'"), std::string::npos)
        << listed.dump(2);
    for (const auto& plugin : listed.at("plugins")) {
      for (const auto& pass : plugin.at("passes")) EXPECT_NE(pass, "registered_before_the_throw");
    }
  }
}

TEST_F(PluginBoundary, TwoPassesOrProbesOfOneNameInOneLibraryAreRefused) {
  const auto passes = listing("twin_passes");
  EXPECT_NE(refusal_of(passes, "twin_passes.so").find("plugin 'twin_passes' registers two passes named 'hostile_twin'"),
            std::string::npos)
      << passes.dump(2);
  const auto probes = listing("twin_probes");
  EXPECT_NE(refusal_of(probes, "twin_probes.so")
                .find("plugin 'twin_probes' registers two probes named 'hostile_twin_probe'"),
            std::string::npos)
      << probes.dump(2);
  // A recipe that names the pass is refused before anything runs.
  TempDir tmp("twins");
  const auto run = this->run(tmp, "  - name: twin\n    pass: hostile_twin\n", "", "[accuracy]", "twin_passes");
  EXPECT_EQ(run.result.exit_code, 2) << run.result.output;
  EXPECT_NE(run.result.output.find("twin_passes.so"), std::string::npos) << run.result.output;
  EXPECT_FALSE(fs::exists(run.dir));
}

TEST_F(PluginBoundary, APluginBuiltForThePreviousMinorLoadsAndRuns) {
  const auto listed = listing("previous_minor");
  bool found = false;
  for (const auto& plugin : listed.at("plugins")) {
    if (plugin.at("name") != "previous_minor") continue;
    found = true;
    EXPECT_EQ(plugin.at("sdk"), "1.0");
  }
  EXPECT_TRUE(found) << listed.dump(2);
  for (const std::string isolate : {"", "--isolate"}) {
    TempDir tmp("previous-minor");
    const auto run = this->run(tmp, "  - name: scale\n    pass: sdk10_scale\n    params: {factor: 1.0}\n", isolate,
                               "[accuracy, params]", "previous_minor");
    ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
    const auto record = read_json(run.dir / "stages/01_scale/record.json");
    EXPECT_EQ(record.at("outcome").at("status"), "accepted");
    EXPECT_EQ(record.at("stats").at("factor"), 1.0);
  }
}

TEST_F(PluginBoundary, TheEntrySymbolsFormIsCheckedByTheCompiler) {
  // What BOOST_DLL_ALIAS-style hand-written entries looked like: a void
  // pointer. Against the installed header it no longer compiles.
  TempDir tmp("entry-form");
  write_text(tmp.path() / "wrong_entry.cpp", R"(#include <mcompress/sdk/plugin_abi.h>
extern "C" { const void* mcompress_plugin_entry = nullptr; }
)");
  const std::string include = (root() / "prefix/include").string();
  auto wrong = run_command("c++ -std=c++17 -fsyntax-only -I" + include + " " + (tmp.path() / "wrong_entry.cpp").string());
  EXPECT_NE(wrong.exit_code, 0) << wrong.output;
  EXPECT_NE(wrong.output.find("mcompress_plugin_entry"), std::string::npos) << wrong.output;
  write_text(tmp.path() / "right_entry.cpp", R"(#include <mcompress/sdk/plugin_abi.h>
static const mcompress_plugin_info* entry() { return nullptr; }
extern "C" { const mcompress_plugin_entry_fn mcompress_plugin_entry = &entry; }
)");
  auto right = run_command("c++ -std=c++17 -fsyntax-only -I" + include + " " + (tmp.path() / "right_entry.cpp").string());
  EXPECT_EQ(right.exit_code, 0) << right.output;
}

}  // namespace
