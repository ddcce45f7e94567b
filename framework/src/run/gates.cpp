#include "run/gates.h"

#include <fmt/format.h>

namespace mcompress {

GateVerdict check_gate(const GateSpec& gate, const std::map<std::string, double>& metrics,
                       const StageOutcome& reference) {
  GateVerdict verdict;
  const auto acc = metrics.find("accuracy");
  const auto ref_acc = reference.metrics.find("accuracy");
  if (!gate.max_accuracy_drop || acc == metrics.end() || ref_acc == reference.metrics.end()) {
    return verdict;
  }
  const double drop = ref_acc->second - acc->second;
  verdict.record = {{"reference", reference.name},
                    {"max_accuracy_drop", *gate.max_accuracy_drop},
                    {"accuracy_drop", drop}};
  if (drop > *gate.max_accuracy_drop) {
    verdict.note = fmt::format("accuracy {:.2f}% is {:.2f} pt below '{}' ({:.2f}%), more than the "
                               "allowed {:.2f} pt",
                               acc->second * 100, drop * 100, reference.name, ref_acc->second * 100,
                               *gate.max_accuracy_drop * 100);
    verdict.status = gate.on_fail == OnGateFail::Stop ? "stopped" : "rolled_back";
  }
  return verdict;
}

}  // namespace mcompress
