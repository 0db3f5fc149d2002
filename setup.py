"""Maps the monorepo folders onto the single `magpie` import namespace."""
from pathlib import Path

from setuptools import setup

ROOTS = {
    "magpie": "libs/magpie",
    "magpie.common": "libs/common",
    "magpie.gateway": "services/gateway",
    "magpie.ingestion": "services/ingestion",
    "magpie.image_fetch": "services/image_fetch",
    "magpie.embedding": "services/embedding",
    "magpie.search": "services/search",
    "magpie.analytics": "services/analytics",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for name, folder in ROOTS.items():
        package_dir[name] = folder
        for init in sorted(Path(folder).rglob("__init__.py")):
            rel = init.parent.relative_to(folder)
            packages.append(".".join([name, *rel.parts]) if rel.parts else name)
    return packages, package_dir


packages, package_dir = _packages()
# The browser files live beside the SDK's npm package; a non-editable install (the Docker
# image) puts them under the prefix, where the gateway's widget route looks second.
SDK_JS = sorted(str(p) for p in Path("sdk/js").glob("*") if p.suffix in {".js", ".css", ".json"})
setup(packages=packages, package_dir=package_dir, include_package_data=True,
      data_files=[("share/magpie/sdk/js", SDK_JS)],
      package_data={"": ["*.html", "*.js", "*.css", "*.json", "templates/*.html", "static/*.js",
                                "static/*.css"]})
