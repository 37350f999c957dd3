// Single-process tools over checkpoints (`mics ckpt`, `mics export`): they read one state file with
// the serial HDF5 driver and never hold more than one tensor in memory.
#pragma once
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "mics/model/gpt.hpp"

namespace mics::checkpoint {

// Table of a run directory's checkpoints: step, committed or partial, size, which one `latest` names.
void list_run(const std::filesystem::path& run_dir, std::ostream& out);

// Metadata and the tensor table (name, shape, chunk, filters) of a checkpoint (step directory or file).
void inspect(const std::filesystem::path& checkpoint, std::ostream& out);

// Reads every dataset of a checkpoint, so HDF5 verifies every chunk's Fletcher32 checksum, and checks
// that every tensor of the model is present with its shape in each group. Returns the problems found,
// each naming the file and dataset (empty: the checkpoint is sound). Throws mics::Error when the file
// does not open or its metadata is unreadable.
std::vector<std::string> verify(const std::filesystem::path& checkpoint, std::ostream& progress);

enum class ExportFormat { safetensors, llmc };
ExportFormat parse_export_format(const std::string& text);  // throws mics::Error naming the value

// Writes the checkpoint's parameters as one safetensors file with Hugging Face GPT-2 names (Conv1D
// weights transposed to [in, out], wte cut to the real vocabulary) or as an llm.c fp32 model file.
// Streams tensor by tensor into OUT.tmp, then renames it to OUT. Throws mics::Error naming the file
// and dataset on any failure.
void export_parameters(const std::filesystem::path& checkpoint, ExportFormat format,
                       const std::filesystem::path& out_path);

// The Hugging Face GPT2Config (config.json) of a model: GPT2LMHeadModel, gelu_new, layer norm eps 1e-5,
// tied embeddings, no dropout. export_parameters writes it beside a safetensors file, so
// GPT2LMHeadModel.from_pretrained(that directory) needs nothing else.
std::string huggingface_config(const model::GptShape& shape);

// Every parameter of a checkpoint into one flat host buffer per unit (ParamLayout order); returns the
// model's shape. `path` is a step_<N> directory, its state.h5, or a run directory (its `latest`).
// Throws InputError naming the file and dataset.
model::GptShape read_parameters(const std::filesystem::path& path, std::vector<std::vector<float>>& units);

// The Hugging Face GPT2LMHeadModel name of a mics tensor ("h.3.attn.c_attn.weight" ->
// "transformer.h.3.attn.c_attn.weight") and whether HF stores it transposed (Conv1D weights).
std::string huggingface_name(const std::string& mics_name);
bool huggingface_transposed(const std::string& mics_name);

}  // namespace mics::checkpoint
