// What the planner knows about a machine: GPUs per node, memory, FLOP rates, and an alpha-beta cost per
// link class (docs/planner.md#hardware). Read from an INI file (inputs/hardware/*.ini), optionally
// overridden by measurements (`mics bench comm --json`, `bench_model --json`).
#pragma once
#include <string>
#include <vector>

namespace mics::planner {

// One link class: a ring step costs alpha + chunk_bytes / bandwidth.
struct Link {
  double alpha = 0;      // seconds per ring step
  double bandwidth = 0;  // bytes/s one direction, as collectives reach it
};

// How the collectives move bytes: rings (NCCL; the engine's accounting) or Open MPI's non-blocking
// collectives (libnbc: linear all-gather, reduce to a root then scatter for reduce-scatter).
enum class Algorithms { ring, libnbc };

struct Hardware {
  std::string name;
  std::string file;                // where it was read from
  int gpus_per_node = 8;
  double memory_bytes = 0;         // per GPU
  double peak_flops = 0;           // dense bf16 per GPU, nominal (the MFU denominator)
  double flop_rate = 0;            // what a training step's compute reaches (costs the stages)
  double memory_bandwidth = 0;     // bytes/s, for the optimizer's streaming pass
  Link intra;                      // between GPUs of a node, per GPU
  Link inter;                      // the node's network, shared by its ranks whose ring successor is off-node
  Algorithms algorithms = Algorithms::ring;
  double overlap = 1.0;            // fraction of communication that can hide behind compute (1: own stream)
  double step_overhead = 0;        // seconds per optimizer step outside the schedule's operations
  double reserve_bytes = 0;        // per GPU memory the runtime takes (context, library workspaces)
  std::vector<std::string> calibrated;  // what measurements replaced, for the report
};

// NAME (a file NAME.ini in one of `search_dirs`) or a path to an INI file. Throws InputError naming the
// hardware (with the known names) or the file, line and key.
Hardware load_hardware(const std::string& name_or_file, const std::vector<std::string>& search_dirs);
// The names of the hardware files in the search directories.
std::vector<std::string> hardware_names(const std::vector<std::string>& search_dirs);

// Replaces nominal constants by measured ones from a calibration file (JSON written by
// `mics bench comm --json` or `bench_model --json`): alpha and bandwidth per link class fitted on the
// measured collectives, the FLOP rate and memory bandwidth from the model benchmark. Throws InputError
// naming the file and what is wrong with it.
void apply_calibration(Hardware& hardware, const std::string& file);

// Ranks of node 0 whose ring successor in their group lies on another node, when groups of `stride`
// spaced ranks (members first + k * stride) of `size` members tile a world of `world` ranks with
// `ranks_per_node` ranks per node, all groups of the kind running at once. 0: the ring stays inside a node.
int off_node_senders(int world, int ranks_per_node, int size, int stride);

}  // namespace mics::planner
