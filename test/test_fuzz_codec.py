"""The message boundary under fuzzed messages (the properties of benchmarks.fuzz_codec, a
few hundred cases here; the benchmark runs 10,000): every Image and CompressedImage is
converted correctly or rejected with ImageError, never anything else."""

from benchmarks.fuzz_codec import fuzz


def test_fuzzed_messages_are_converted_or_rejected_with_image_error():
    results = fuzz(cases=300)
    for name, counts in results.items():
        assert counts['converted'] > 0 and counts['rejected'] > 0, (name, counts)
        assert counts['converted'] + counts['rejected'] >= 100, (name, counts)
