"""The static files storage of production: whitenoise's compressed, hashed files.

The vendored Chart.js and Swagger UI end with a sourceMappingURL comment, but their
.map files are not shipped; Django's manifest storage rewrites those comments and
refuses a missing target, which would fail collectstatic. Source maps are for a
developer's browser tools only, so these comments are left as they are.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


def _without_source_maps(patterns):
    kept = []
    for glob, rules in patterns:
        rules = tuple(
            rule for rule in rules if "sourceMappingURL" not in (rule[0] if isinstance(rule, tuple) else rule)
        )
        if rules:
            kept.append((glob, rules))
    return tuple(kept)


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    patterns = _without_source_maps(CompressedManifestStaticFilesStorage.patterns)
