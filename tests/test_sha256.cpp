// SHA-256 against the FIPS 180-4 test vectors and the system's sha256sum.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "mcompress/framework/support/sha256.h"
#include "mcompress/sdk/error.h"
#include "test_support.h"

namespace {

using mcompress::sha256_hex;

TEST(Sha256, EmptyInput) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256, Abc) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, TwoBlockMessage) {
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, OneMillionAs) {
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, ChunkedUpdatesEqualOneUpdate) {
  const std::string text(1000, 'x');
  mcompress::Sha256 hash;
  for (size_t i = 0; i < text.size(); i += 7) hash.update(std::string_view(text).substr(i, 7));
  EXPECT_EQ(hash.hex_digest(), sha256_hex(text));
}

TEST(Sha256, FileHashMatchesSha256sum) {
  // This test executable: a real, multi-megabyte binary.
  const std::string file = std::filesystem::read_symlink("/proc/self/exe").string();
  const auto expected = mcompress::testing::run_command("sha256sum " + file);
  ASSERT_EQ(expected.exit_code, 0) << expected.output;
  EXPECT_EQ(mcompress::sha256_file_hex(file), expected.output.substr(0, 64));
}

TEST(Sha256, MissingFileIsAnErrorNamingIt) {
  try {
    mcompress::sha256_file_hex("/no/such/file.so");
    FAIL() << "no error";
  } catch (const mcompress::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/no/such/file.so"), std::string::npos) << e.what();
  }
}

}  // namespace
