// The SDK as a third-party author sees it: install mcompress, build the example
// plugin against the installed package with find_package(mcompress), and load
// it through the installed host.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

using mcompress::testing::run_command;
using mcompress::testing::TempDir;

TEST(OutOfTreePlugin, BuildsAgainstTheInstalledSdkAndLoadsThroughTheHost) {
  TempDir tmp("out-of-tree");
  const std::string prefix = (tmp.path() / "prefix").string();
  const std::string build = (tmp.path() / "build").string();

  auto install = run_command("cmake --install " + std::string(MCOMPRESS_BINARY_DIR) + " --prefix " + prefix);
  ASSERT_EQ(install.exit_code, 0) << install.output;

  auto configure = run_command("cmake -S " + std::string(MCOMPRESS_SOURCE_DIR) +
                               "/examples/out_of_tree_plugin -B " + build +
                               " -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=" + prefix +
                               " '-DCMAKE_CXX_FLAGS=" MCOMPRESS_OUT_OF_TREE_CXX_FLAGS "'");
  ASSERT_EQ(configure.exit_code, 0) << configure.output;
  auto compile = run_command("cmake --build " + build);
  ASSERT_EQ(compile.exit_code, 0) << compile.output;

  // The installed host finds its own installed plugins plus the new one.
  auto listed = run_command("( " + prefix + "/bin/mcompress plugins --json --plugin-dir " + build +
                            "/plugins 2>/dev/null )");
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  const auto json = nlohmann::json::parse(listed.output);
  std::vector<std::string> passes;
  for (const auto& plugin : json.at("plugins")) {
    for (const auto& pass : plugin.at("passes")) passes.push_back(pass);
  }
  EXPECT_NE(std::find(passes.begin(), passes.end(), "weight_report"), passes.end());
  EXPECT_NE(std::find(passes.begin(), passes.end(), "magnitude_prune"), passes.end());
  EXPECT_TRUE(json.at("refused").empty());

  auto explained = run_command(prefix + "/bin/mcompress explain weight_report --plugin-dir " + build + "/plugins");
  EXPECT_EQ(explained.exit_code, 0) << explained.output;
  EXPECT_NE(explained.output.find("include_buffers"), std::string::npos);

  // The plugin's own check, linked against the installed mcompress::testing.
  auto checked = run_command(build + "/weight_report_check " + build + "/plugins/weight_report.so " +
                             (tmp.path() / "check").string());
  EXPECT_EQ(checked.exit_code, 0) << checked.output;
  EXPECT_NE(checked.output.find("weight_report: listed"), std::string::npos) << checked.output;
}
