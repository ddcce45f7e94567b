#pragma once
// One function per `mcompress` command, each in commands/<command>.cpp;
// `args` are the arguments after the command name. Each returns the exit code.
#include <string>
#include <vector>

namespace mcompress::cli {

int command_run(const std::vector<std::string>& args);
int command_compare(const std::vector<std::string>& args);
int command_report(const std::vector<std::string>& args);
int command_runs(const std::vector<std::string>& args);
int command_plugins(const std::vector<std::string>& args);
int command_explain(const std::vector<std::string>& args);
int command_benchmark(const std::vector<std::string>& args);
int command_export(const std::vector<std::string>& args);
int command_quantize(const std::vector<std::string>& args);
int command_compress(const std::vector<std::string>& args);
int command_stage_exec(const std::vector<std::string>& args);
int command_zoo();
int command_version();

}  // namespace mcompress::cli
