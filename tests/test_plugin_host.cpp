// Plugin loading: what loads, and every way a library is refused.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/sdk/version.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::PluginHost;
using mcompress::testing::TempDir;

namespace {

const fs::path kGood = fs::path(MCOMPRESS_TEST_PLUGIN_DIR) / "good";
const fs::path kBad = fs::path(MCOMPRESS_TEST_PLUGIN_DIR) / "bad";
const fs::path kInTree = MCOMPRESS_PLUGIN_DIR;

std::string refusal_of(const PluginHost& host, const fs::path& library) {
  for (const auto& r : host.refusals()) {
    if (fs::path(r.path) == library) return r.reason;
  }
  return "<not refused>";
}

TEST(PluginHost, LoadsInTreePluginsWithTheirPassesAndVersions) {
  PluginHost host;
  host.load_directories({kInTree});
  EXPECT_TRUE(host.refusals().empty());
  ASSERT_NE(host.find("finetune"), nullptr);
  ASSERT_NE(host.find("magnitude_prune"), nullptr);
  EXPECT_EQ(host.find("magnitude_prune")->kind, mcompress::PassKind::Prune);
  const auto* plugin = host.plugin_of("finetune");
  ASSERT_NE(plugin, nullptr);
  EXPECT_EQ(plugin->name, "finetune");
  EXPECT_EQ(plugin->sdk_major, MCOMPRESS_SDK_VERSION_MAJOR);
  EXPECT_EQ(plugin->cxx_abi, MCOMPRESS_CXX_ABI_TAG);
  EXPECT_EQ(host.find("no_such_pass"), nullptr);
}

TEST(PluginHost, RefusesWrongSdkMajorNamingFileAndVersions) {
  PluginHost host;
  EXPECT_FALSE(host.load_file(kBad / "wrong_major.so"));
  const auto why = refusal_of(host, kBad / "wrong_major.so");
  EXPECT_NE(why.find("SDK 99.0"), std::string::npos) << why;
  EXPECT_NE(why.find("this host provides SDK 1."), std::string::npos) << why;
  EXPECT_TRUE(host.names().empty());
}

TEST(PluginHost, RefusesPluginBuiltForNewerMinor) {
  PluginHost host;
  EXPECT_FALSE(host.load_file(kBad / "newer_minor.so"));
  EXPECT_NE(refusal_of(host, kBad / "newer_minor.so").find("newer than this host"), std::string::npos);
}

TEST(PluginHost, RefusesOtherLibTorchAndOtherCxxAbi) {
  PluginHost host;
  EXPECT_FALSE(host.load_file(kBad / "other_torch.so"));
  EXPECT_FALSE(host.load_file(kBad / "other_abi.so"));
  EXPECT_NE(refusal_of(host, kBad / "other_torch.so").find("LibTorch 0.4.1"), std::string::npos);
  EXPECT_NE(refusal_of(host, kBad / "other_abi.so").find("cxx11abi=0"), std::string::npos);
}

TEST(PluginHost, RefusesLibraryWithoutEntrySymbol) {
  PluginHost host;
  EXPECT_FALSE(host.load_file(kBad / "no_entry.so"));
  EXPECT_NE(refusal_of(host, kBad / "no_entry.so").find("not an mcompress plugin"), std::string::npos);
}

TEST(PluginHost, RefusesFileThatIsNotALibrary) {
  TempDir dir("not-a-plugin");
  const auto fake = dir.path() / "fake.so";
  mcompress::testing::write_text(fake, "this is text, not ELF\n");
  PluginHost host;
  host.load_directories({dir.path()});
  const auto why = refusal_of(host, fake);
  EXPECT_NE(why.find("not a loadable shared library"), std::string::npos) << why;
}

TEST(PluginHost, DuplicatePassIsAClearErrorAndTheSecondLibraryIsRefused) {
  TempDir dir("duplicate");
  fs::copy_file(kGood / "test_passes.so", dir.path() / "test_passes_copy.so");
  PluginHost host;
  EXPECT_TRUE(host.load_file(kGood / "test_passes.so"));
  EXPECT_FALSE(host.load_file(dir.path() / "test_passes_copy.so"));
  EXPECT_TRUE(host.has_duplicate_passes());
  const auto why = refusal_of(host, dir.path() / "test_passes_copy.so");
  EXPECT_NE(why.find("already provided by"), std::string::npos) << why;
  EXPECT_NE(why.find((kGood / "test_passes.so").string()), std::string::npos) << why;
  EXPECT_EQ(host.plugins().size(), 1u);
}

TEST(PluginHost, SearchPathUsesEnvironmentAndExtraDirsButNeverTheCurrentDirectory) {
  setenv("MCOMPRESS_PLUGIN_PATH", "/tmp/a::/tmp/b:", 1);
  const auto dirs = PluginHost::search_path({"/tmp/c"});
  unsetenv("MCOMPRESS_PLUGIN_PATH");
  ASSERT_EQ(dirs.size(), 4u);
  EXPECT_EQ(dirs[0], kInTree);
  EXPECT_EQ(dirs[1], "/tmp/a");
  EXPECT_EQ(dirs[2], "/tmp/b");
  EXPECT_EQ(dirs[3], "/tmp/c");
}

// A folder holding a copy of test_passes.so, both with owner-only write.
fs::path private_plugin_folder(const TempDir& tmp) {
  const fs::path folder = tmp.path() / "plugins";
  fs::create_directories(folder);
  fs::copy_file(kGood / "test_passes.so", folder / "test_passes.so");
  const auto mode = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                    fs::perms::others_read | fs::perms::others_exec;
  fs::permissions(folder, mode);
  fs::permissions(folder / "test_passes.so", mode);
  return folder;
}

TEST(PluginHost, RefusesAPluginFolderOthersCanWrite) {
  TempDir tmp("writable-folder");
  const auto folder = private_plugin_folder(tmp);
  fs::permissions(folder, fs::perms::others_write, fs::perm_options::add);
  PluginHost host;
  host.load_directories({folder});
  EXPECT_EQ(host.find("test_damage"), nullptr);
  const auto why = refusal_of(host, folder);
  EXPECT_NE(why.find(folder.string()), std::string::npos) << why;
  EXPECT_NE(why.find("writable by every user"), std::string::npos) << why;
  EXPECT_NE(why.find("chmod go-w " + folder.string()), std::string::npos) << why;
}

TEST(PluginHost, RefusesAPluginFileOthersCanWrite) {
  TempDir tmp("writable-file");
  const auto folder = private_plugin_folder(tmp);
  const auto library = folder / "test_passes.so";
  fs::permissions(library, fs::perms::others_write, fs::perm_options::add);
  PluginHost host;
  host.load_directories({folder});
  EXPECT_EQ(host.find("test_damage"), nullptr);
  const auto why = refusal_of(host, library);
  EXPECT_NE(why.find("writable by every user"), std::string::npos) << why;
  EXPECT_NE(why.find("chmod go-w " + library.string()), std::string::npos) << why;

  fs::permissions(library, fs::perms::owner_all | fs::perms::group_write, fs::perm_options::replace);
  PluginHost group_host;
  EXPECT_FALSE(group_host.load_file(library));
  EXPECT_NE(refusal_of(group_host, library).find("writable by its group"), std::string::npos);
}

TEST(PluginHost, LoadsOnceThePermissionsAreFixedAndRecordsItsHash) {
  TempDir tmp("fixed-permissions");
  const auto folder = private_plugin_folder(tmp);
  fs::permissions(folder, fs::perms::others_write, fs::perm_options::add);
  fs::permissions(folder, fs::perms::others_write | fs::perms::group_write, fs::perm_options::remove);
  PluginHost host;
  host.load_directories({folder});
  EXPECT_TRUE(host.refusals().empty());
  ASSERT_NE(host.find("test_damage"), nullptr);
  const auto sha256sum = mcompress::testing::run_command("sha256sum " + (folder / "test_passes.so").string());
  EXPECT_EQ(host.plugin_of("test_damage")->sha256, sha256sum.output.substr(0, 64));
}

TEST(PluginHost, ListsEveryLibraryWithAbsolutePathAndHash) {
  PluginHost host;
  host.load_directories({kInTree});
  const auto libraries = host.library_files();
  bool saw_sdk = false, saw_plugin = false;
  for (const auto& library : libraries) {
    EXPECT_TRUE(fs::path(library.path).is_absolute()) << library.path;
    EXPECT_EQ(library.sha256.size(), 64u) << library.path;
    const auto expected = mcompress::testing::run_command("sha256sum " + library.path);
    EXPECT_EQ(library.sha256, expected.output.substr(0, 64)) << library.path;
    if (fs::path(library.path).filename().string().rfind("libmcompress_sdk", 0) == 0) saw_sdk = true;
    if (library.role == "plugin" && fs::path(library.path).filename() == "finetune.so") saw_plugin = true;
  }
  EXPECT_TRUE(saw_sdk);
  EXPECT_TRUE(saw_plugin);
}

TEST(PluginHost, CliListsLibraryHashes) {
  const auto result = mcompress::testing::run_command(std::string(MCOMPRESS_CLI) + " plugins");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("libraries (SHA-256)"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("libmcompress_sdk"), std::string::npos) << result.output;
  const auto finetune = (kInTree / "finetune.so").string();
  const auto sha256sum = mcompress::testing::run_command("sha256sum " + finetune);
  EXPECT_NE(result.output.find(sha256sum.output.substr(0, 64)), std::string::npos) << result.output;
}

TEST(PluginHost, CliListsLoadedAndRefusedPlugins) {
  const auto result = mcompress::testing::run_command(
      std::string(MCOMPRESS_CLI) + " plugins --plugin-dir " + kBad.string());
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("magnitude_prune"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("refused"), std::string::npos);
  EXPECT_NE(result.output.find("wrong_major.so"), std::string::npos);
}

TEST(PluginHost, CliExplainPrintsTheDeclaredSchema) {
  const auto ok = mcompress::testing::run_command(std::string(MCOMPRESS_CLI) + " explain magnitude_prune");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("sparsity"), std::string::npos) << ok.output;
  const auto typo = mcompress::testing::run_command(std::string(MCOMPRESS_CLI) + " explain magnitude_prun");
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_NE(typo.output.find("did you mean `magnitude_prune`"), std::string::npos) << typo.output;
}

}  // namespace
