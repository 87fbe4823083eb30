"""Language codes and the URIEL typological database, as shipped by ``urielplus``.

Codes are normalised to the ISO 639-3 codes URIEL uses: every ISO 639-1 code (2 letters, 184 of
them) maps to its ISO 639-3 equivalent through the table below (URIEL+ ships no such table; this one
matches both pycountry's ISO data and lang2vec's ``letter_codes.json``), so ``hi`` and ``hin`` are the
same language. Macrolanguage codes stay as they are (``ar`` -> ``ara``, ``sw`` -> ``swa``): URIEL has
a row for all 184, with both family and syntactic data for 159 (not, e.g., for Slovak or Sindhi,
which have no syntactic data, or Basque, Bokmål and Quechua, which have no family).

URIEL comes from ``urielplus`` rather than ``lang2vec``. Both ship the same URIEL npz data and need no
network after ``pip install``, but lang2vec imports ``pkg_resources``, which current setuptools no
longer has, is slow to import and has no distance function; urielplus imports quickly
and names the distance kinds (genetic, syntactic, geographic, phonological, inventory, featural,
morphological, script). Its cost is pandas and a one-time copy of its npz files inside its own
package folder on first load (a read-only install fails there once, with a clear error). Versions,
sizes and times: benchmarks/URIEL.md. Its data is CC BY-SA 4.0.

No torch here: pure Python plus URIEL's numpy arrays.
"""

from __future__ import annotations

import functools
import logging
import re

from ..errors import EdgecompError

# ISO 639-1 -> ISO 639-3, packed as 5-letter words "aaaar" = aa -> aar.
_ISO1 = """
aaaar ababk aeave afafr akaka amamh anarg arara asasm avava ayaym azaze babak bebel bgbul bibis
bmbam bnben bobod brbre bsbos cacat ceche chcha cocos crcre csces cuchu cvchv cycym dadan dedeu
dvdiv dzdzo eeewe elell eneng eoepo esspa etest eueus fafas ffful fifin fjfij fofao frfra fyfry
gagle gdgla glglg gngrn guguj gvglv hahau heheb hihin hohmo hrhrv hthat huhun hyhye hzher iaina
idind ieile igibo iiiii ikipk ioido isisl itita iuiku jajpn jvjav kakat kgkon kikik kjkua kkkaz
klkal kmkhm knkan kokor krkau kskas kukur kvkom kwcor kykir lalat lbltz lglug lilim lnlin lolao
ltlit lulub lvlav mgmlg mhmah mimri mkmkd mlmal mnmon mrmar msmsa mtmlt mymya nanau nbnob ndnde
nenep ngndo nlnld nnnno nonor nrnbl nvnav nynya ococi ojoji omorm orori ososs papan pipli plpol
pspus ptpor quque rmroh rnrun roron rurus rwkin sasan scsrd sdsnd sesme sgsag shhbs sisin skslk
slslv smsmo snsna sosom sqsqi srsrp ssssw stsot susun svswe swswa tatam tetel tgtgk ththa titir
tktuk tltgl tntsn toton trtur tstso tttat twtwi tytah uguig ukukr ururd uzuzb veven vivie vovol
wawln wowol xhxho yiyid yoyor zazha zhzho zuzul
"""
ISO639_1: dict[str, str] = {w[:2]: w[2:] for w in _ISO1.split()}

_CODE = re.compile(r"[a-z]{2,3}")


def iso639_3(code: str) -> str:
    """The ISO 639-3 code for an ISO 639-1 or 639-3 code (a BCP 47 tag's region/script is dropped).

    Three-letter codes pass through lowercased (whether URIEL knows them is :func:`check_language`'s
    job); an unknown two-letter code or anything that is not a language code is refused.
    """
    raw = code
    code = str(code).strip().lower().replace("_", "-").split("-")[0]
    if not _CODE.fullmatch(code):
        raise EdgecompError(
            f"unknown language code '{raw}': give an ISO 639-1 code (e.g. 'hi') or an ISO 639-3 code (e.g. 'hin')"
        )
    if len(code) == 2:
        if code not in ISO639_1:
            raise EdgecompError(
                f"unknown language code '{raw}': not an ISO 639-1 code (e.g. 'hi'; or give ISO 639-3, e.g. 'hin')"
            )
        return ISO639_1[code]
    return code


@functools.lru_cache(maxsize=1)
def uriel():
    """The URIEL+ knowledge base (loaded once per process: loading is slow), its original URIEL data only.

    urielplus calls ``logging.basicConfig(level=INFO)`` on import and logs at INFO while loading; a
    temporary handler keeps that import from configuring the root logger, and loading runs with INFO
    disabled.
    """
    root = logging.getLogger()
    guard = None if root.handlers else logging.NullHandler()
    if guard is not None:
        root.addHandler(guard)
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        from urielplus.urielplus import URIELPlus

        return URIELPlus()
    except OSError as e:  # first load copies its npz files inside its own package folder
        raise EdgecompError(
            f"cannot load the URIEL database shipped by urielplus ({e}); it writes its data files into "
            "its package folder on first use: run edgecomp once with write access to that folder"
        ) from None
    finally:
        logging.disable(previous)
        if guard is not None:
            root.removeHandler(guard)


@functools.lru_cache(maxsize=1)
def uriel_languages() -> frozenset[str]:
    """Every ISO 639-3 code URIEL has a row for (7970)."""
    return frozenset(str(code) for code in uriel().get_phylogeny_languages_array())


def check_language(code: str) -> str:
    """``code`` as the ISO 639-3 code URIEL uses, or an :class:`EdgecompError` if URIEL lacks it."""
    iso3 = iso639_3(code)
    # every ISO 639-1 language has a URIEL row (tests/test_related.py checks it): no load needed
    if iso3 not in ISO639_1.values() and iso3 not in uriel_languages():
        raise EdgecompError(
            f"unknown language code '{code}': not an ISO 639-1 code and not one of URIEL's "
            f"{len(uriel_languages())} ISO 639-3 codes (e.g. 'hi' or 'hin' for Hindi)"
        )
    return iso3
