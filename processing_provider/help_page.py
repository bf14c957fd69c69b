"""The page the Help button of an algorithm's dialog opens: its help, rendered in the browser, with a
table of its parameters, links to the README and the model card.

Written from the algorithm itself when the dialog asks for it, so the page always says what the
algorithm does in this version; it lives in the user's QGIS profile, never in the plugin's folder.
"""

import configparser
import html
from pathlib import Path

from qgis.core import QgsApplication

from ..dependencies import PLUGIN_DIR
from .compat import PARAMETER_ADVANCED, PARAMETER_HIDDEN, PARAMETER_OPTIONAL

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 52em; margin: 2em auto; padding: 0 1em; line-height: 1.45;
color: #222; }}
h1 {{ font-size: 1.6em; }} h3 {{ margin-top: 1.6em; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ border: 1px solid #ccc; padding: .3em .5em; text-align: left;
vertical-align: top; }} th {{ background: #f0f0f0; }} code {{ background: #f4f4f4; padding: 0 .2em; }}
</style></head><body>
<h1>{title}</h1>
<p><code>{algorithm_id}</code> &middot; SAR LULC {version}</p>
{help}
<h3>Parameters</h3>
<table><tr><th>Name</th><th>Label</th><th>Kind</th><th>Default</th><th></th></tr>
{rows}
</table>
<h3>More</h3>
<p>The plugin's <a href="{readme}">README</a> (installation, every option, bad inputs and what happens,
benchmarks) and the bundled models' <a href="{model_card}">model card</a> (training data, scores on held-out
real and simulated scenes, limits).</p>
</body></html>
"""


def help_page(algorithm) -> Path:
    """Write the algorithm's help page and return its path."""
    metadata = configparser.ConfigParser()
    metadata.read(PLUGIN_DIR / "metadata.txt", encoding="utf-8")
    version = metadata.get("general", "version", fallback="")
    rows = []
    for definition in algorithm.parameterDefinitions():
        flags = definition.flags()
        if flags & PARAMETER_HIDDEN:
            continue
        notes = [note for flag, note in ((PARAMETER_OPTIONAL, "optional"), (PARAMETER_ADVANCED, "advanced"))
                 if flags & flag]
        default = definition.defaultValue()
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in (
            f"<code>{html.escape(definition.name())}</code>", html.escape(definition.description()),
            html.escape(definition.type()), "" if default in (None, "") else html.escape(str(default)),
            ", ".join(notes))) + "</tr>")
    page = PAGE.format(title=html.escape(algorithm.displayName()), algorithm_id=html.escape(algorithm.id()),
                       version=html.escape(version), help=algorithm.shortHelpString(), rows="\n".join(rows),
                       readme=(PLUGIN_DIR / "README.md").as_uri(),
                       model_card=(PLUGIN_DIR / "model" / "MODEL_CARD.md").as_uri())
    folder = Path(QgsApplication.qgisSettingsDirPath()) / "sar_lulc" / "help"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{algorithm.name()}.html"
    path.write_text(page, encoding="utf-8")
    return path
