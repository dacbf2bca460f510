"""Every CLI command refuses bad arguments with exit code 2 and one sentence, and writes nothing.

The checks run before any model is loaded (a bad --model is a folder that does not exist, so
it fails at once), which keeps each case to the cost of reading a benchmark file.
"""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from cli import main

MISSING_MODEL = "/nonexistent/editscope-model"
MODEL_SENTENCE = f"Model folder '{MISSING_MODEL}' does not exist."
UNKNOWN_EDITOR = "Unknown editor rome; choose from all, unedited, memit"
UNKNOWN_BENCHMARK = "Unknown benchmark 'nope'; choose one of counterfact"
CHEAP = ["--fluency-prompts", "0", "--perplexity-tokens", "0"]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """Benchmark files that cannot be used, by kind."""
    folder = tmp_path_factory.mktemp("bad-benchmarks")
    files = {
        "not_json": folder / "not_json.json",
        "not_a_list": folder / "not_a_list.json",
        "unknown_records": folder / "unknown_records.json",
        "broken_gzip": folder / "broken.json.gz",
        "empty_list": folder / "empty.json",
    }
    files["not_json"].write_text("{not json")
    files["not_a_list"].write_text(json.dumps({"prompt": "x"}))
    files["unknown_records"].write_text(json.dumps([{"question": "x"}]))
    files["broken_gzip"].write_bytes(gzip.compress(b"[]")[:-6])
    files["empty_list"].write_text("[]")
    return {kind: str(path) for kind, path in files.items()}


BAD_FILE_SENTENCES = {
    "not_json": "is not valid JSON",
    "not_a_list": "holds a JSON object, not a list of records.",
    "unknown_records": "Record 0 of",
    "broken_gzip": "cannot be read as a benchmark file",
    "empty_list": "holds an empty list, but a benchmark needs a record.",
}


def refused(args: list[str], tmp_path, sentence: str) -> None:
    """The command exits 2 with `sentence` in a one-line error, and no reports folder appears."""
    reports = tmp_path / "reports"
    result = CliRunner().invoke(main, [*args, "--reports-dir", str(reports)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and sentence in errors[0], result.output
    assert errors[0].rstrip().endswith("."), errors[0]
    assert "Traceback" not in result.output
    assert not reports.exists()


# (command arguments, a part of the sentence that must explain the refusal)
CASES = {
    # compare
    "compare unknown editor": (["compare", "--editors", "rome"], UNKNOWN_EDITOR),
    "compare unknown benchmark": (["compare", "--benchmark", "nope"], UNKNOWN_BENCHMARK),
    "compare batch 0": (["compare", "--batch", "0"], "--batch must be a positive number of edits, not 0."),
    "compare batch negative": (["compare", "--batch", "-5"], "--batch must be a positive number of edits, not -5."),
    "compare batch beyond split": (["compare", "--benchmark", "medcf", "--batch", "5000"],
                                   "--batch 5000: Cannot draw 5000 from 802 requests"),
    "compare workers 0": (["compare", "--workers", "0"],
                          "--workers must be 'auto' or a positive whole number, not '0'."),
    "same-subject workers not a number": (["stress", "same-subject", "--workers", "many"],
                                          "--workers must be 'auto' or a positive whole number, not 'many'."),
    "compare unknown model": (["compare", "--benchmark", "medcf", "--batch", "2", "--model", MISSING_MODEL],
                              MODEL_SENTENCE),
    # stress same-subject
    "same-subject unknown editor": (["stress", "same-subject", "--editors", "rome"], UNKNOWN_EDITOR),
    "same-subject batch 0": (["stress", "same-subject", "--batch-sizes", "1,0"],
                             "--batch-sizes needs positive integers, not '1,0'."),
    "same-subject batch negative": (["stress", "same-subject", "--batch-sizes", "-2"],
                                    "--batch-sizes needs positive integers, not '-2'."),
    "same-subject batch not a number": (["stress", "same-subject", "--batch-sizes", "1,x"],
                                        "--batch-sizes must be comma-separated integers"),
    "same-subject batch beyond relations": (["stress", "same-subject", "--batch-sizes", "5,30"],
                                            "--batch-sizes 30 is larger than the 24 relations"),
    "same-subject natural beyond groups": (["stress", "same-subject", "--natural", "5000"],
                                           "Cannot draw 5000 from 667 requests in same-subject groups"),
    "same-subject unknown model": (["stress", "same-subject", "--batch-sizes", "2", "--natural", "0",
                                    "--model", MISSING_MODEL], MODEL_SENTENCE),
    # stress batch-sweep
    "batch-sweep unknown editor": (["stress", "batch-sweep", "--editors", "memit,rome"], UNKNOWN_EDITOR),
    "batch-sweep unknown benchmark": (["stress", "batch-sweep", "--benchmark", "nope"], UNKNOWN_BENCHMARK),
    "batch-sweep unknown split": (["stress", "batch-sweep", "--split", "valid"],
                                  "Benchmark 'medcfpp' has no split 'valid'"),
    "batch-sweep batch 0": (["stress", "batch-sweep", "--batch-sizes", "0"],
                            "--batch-sizes needs positive integers, not '0'."),
    "batch-sweep batch beyond split": (["stress", "batch-sweep", "--batch-sizes", "1,5000"],
                                       "medcfpp, --batch-sizes 5000: Cannot draw 5000 from 755 requests"),
    "batch-sweep batch beyond edits": (["stress", "batch-sweep", "--batch-sizes", "1,10", "--edits", "5"],
                                       "--batch-sizes 10 is larger than the 5 edits drawn (--edits)."),
    "batch-sweep unknown model": (["stress", "batch-sweep", "--batch-sizes", "2", "--model", MISSING_MODEL],
                                  MODEL_SENTENCE),
    # stress sequential
    "sequential unknown editor": (["stress", "sequential", "--editors", "rome"], UNKNOWN_EDITOR),
    "sequential unknown benchmark": (["stress", "sequential", "--benchmark", "nope"], UNKNOWN_BENCHMARK),
    "sequential steps 0": (["stress", "sequential", "--steps", "0"],
                           "--steps must be a positive number of batches, not 0."),
    "sequential batch 0": (["stress", "sequential", "--batch", "0"],
                           "--batch must be a positive number of edits, not 0."),
    "sequential batch negative": (["stress", "sequential", "--batch", "-3"],
                                  "--batch must be a positive number of edits, not -3."),
    "sequential beyond split": (["stress", "sequential", "--benchmark", "medcf", "--steps", "100", "--batch", "20"],
                                "--steps 100 × --batch 20: Cannot draw 2000 from 802 requests"),
    "sequential unknown model": (["stress", "sequential", "--steps", "1", "--batch", "2", "--model", MISSING_MODEL],
                                 MODEL_SENTENCE),
    # akd
    "akd unknown editor": (["akd", "--editors", "rome"], UNKNOWN_EDITOR),
    "akd unknown benchmark": (["akd", "--benchmark", "nope"], UNKNOWN_BENCHMARK),
    "akd batch 0": (["akd", "--batch", "0"], "--batch must be at least 2 edits"),
    "akd batch negative": (["akd", "--batch", "-4"], "--batch must be at least 2 edits"),
    "akd batch beyond relations": (["akd", "--batch", "30"], "--batch 30 is larger than the 24 relations"),
    "akd bad layers": (["akd", "--layers", "x-y"], "--layers must look like 4-8 or 2,4,6, not 'x-y'."),
    "akd benchmark without subjects": (["akd", "--benchmark", "medversa"], "has no subject span"),
    "akd unknown model": (["akd", "--batch", "2", "--model", MISSING_MODEL], MODEL_SENTENCE),
    # bench medical
    "bench unknown editor": (["bench", "medical", "--editors", "rome"], UNKNOWN_EDITOR),
    "bench unknown benchmark": (["bench", "medical", "--benchmark", "medcf,nope"],
                                "Unknown benchmark 'nope'; choose medcf, medcfpp, medversa, all"),
    "bench non-medical benchmark": (["bench", "medical", "--benchmark", "counterfact"],
                                    "bench medical runs medcf, medcfpp, medversa"),
    "bench batch 0": (["bench", "medical", "--batch", "0,10"], "--batch needs positive integers, not '0,10'."),
    "bench batch negative": (["bench", "medical", "--batch", "-1"], "--batch needs positive integers, not '-1'."),
    "bench batch beyond split": (["bench", "medical", "--benchmark", "medcf", "--batch", "5000"],
                                 "medcf, --batch 5000: Cannot draw 5000 from 802 requests"),
    "bench unknown model": (["bench", "medical", "--benchmark", "medcf", "--batch", "2", "--model", MISSING_MODEL],
                            MODEL_SENTENCE),
}


@pytest.mark.parametrize("args, sentence", CASES.values(), ids=CASES.keys())
def test_bad_arguments_exit_2_with_one_sentence_and_write_nothing(args, sentence, tmp_path):
    refused([*args, *CHEAP] if args[0] != "compare" else args, tmp_path, sentence)


FILE_COMMANDS = {
    "compare": ["compare", "--batch", "1", "--benchmark"],
    "batch-sweep": ["stress", "batch-sweep", "--batch-sizes", "1", "--benchmark"],
    "sequential": ["stress", "sequential", "--steps", "1", "--batch", "1", "--benchmark"],
    "akd": ["akd", "--batch", "2", "--benchmark"],
    "bench": ["bench", "medical", "--batch", "1", "--benchmark"],
}


@pytest.mark.parametrize("command", FILE_COMMANDS, ids=FILE_COMMANDS.keys())
@pytest.mark.parametrize("kind", BAD_FILE_SENTENCES, ids=BAD_FILE_SENTENCES.keys())
def test_unusable_benchmark_files_are_refused_by_every_command(command, kind, bad_files, tmp_path):
    refused([*FILE_COMMANDS[command], bad_files[kind]], tmp_path, BAD_FILE_SENTENCES[kind])


@pytest.mark.parametrize("command", FILE_COMMANDS, ids=FILE_COMMANDS.keys())
def test_a_missing_benchmark_file_is_named(command, tmp_path):
    missing = tmp_path / "absent.json"
    refused([*FILE_COMMANDS[command], str(missing)], tmp_path, f"There is no benchmark file at {missing}.")


COVARIANCE_CASES = {
    "unknown model": (["--model", MISSING_MODEL, "--tokens", "10"], MODEL_SENTENCE),
    "tokens 0": (["--tokens", "0"], "--tokens must be positive, not 0."),
    "tokens negative": (["--tokens", "-5"], "--tokens must be positive, not -5."),
    "bad layers": (["--layers", "x"], "--layers must look like 4-8 or 2,4,6, not 'x'."),
    "reversed layers": (["--layers", "8-4"], "--layers '8-4' is a reversed range; write 4-8."),
    "batch size 0": (["--batch-size", "0"], "--max-length must be at least 2 and --batch-size at least 1."),
}


@pytest.mark.parametrize("args, sentence", COVARIANCE_CASES.values(), ids=COVARIANCE_CASES.keys())
def test_covariance_refuses_bad_arguments_and_caches_nothing(args, sentence, tmp_cache):
    result = CliRunner().invoke(main, ["covariance", *args])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"Error: {sentence}" or sentence in result.output
    assert [path.name for path in tmp_cache.iterdir()] == ["models"]


def test_report_of_a_folder_without_report_json_exits_2_and_writes_nothing(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: No report.json in {tmp_path}; pass the folder a run wrote "
                                     "under reports/.")
    assert list(tmp_path.iterdir()) == []


def test_report_of_a_missing_folder_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "No report.json in" in result.output
    assert not (tmp_path / "absent").exists()


def test_report_of_a_malformed_report_json_exits_2_and_renders_nothing(tmp_path):
    (tmp_path / "report.json").write_text("{\"format\": 1,")
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "report.json is not valid JSON" in result.output
    assert [path.name for path in tmp_path.iterdir()] == ["report.json"]
