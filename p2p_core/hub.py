"""``--ckpt hf:OWNER/NAME[@REVISION]``: a p2p model on the Hugging Face Hub, by name.

A Hub model repository of p2p holds ``model.safetensors`` (:mod:`p2p_core.weights`), which alone rebuilds the
generator; ``p2p push`` (:mod:`p2p_core.publish`) makes such repositories. Only that file is fetched, through
``huggingface_hub``, so its cache (``HF_HOME``, ``HF_HUB_CACHE``), offline mode (``HF_HUB_OFFLINE``), mirror
(``HF_ENDPOINT``), token (``HF_TOKEN`` or ``hf auth login``, for private repositories) and progress bar behave as
in every other library that loads from the Hub, and an interrupted download leaves nothing that looks complete.
A revision is a branch, a tag or a commit; what is written from a Hub model records the commit it resolved to
(:func:`pinned`), so results name the exact weights even when the branch moves on.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from p2p_core.errors import ConfigError, DataError
from p2p_core.weights import MODEL_FILE

PREFIX = "hf:"


@attrs.frozen
class Reference:
    """``hf:OWNER/NAME@REVISION`` taken apart; revision None means the repository's default branch."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


def is_reference(ckpt: object) -> bool:
    return str(ckpt).startswith(PREFIX)


def parse(text: str) -> Reference:
    """``hf:OWNER/NAME[@REVISION]`` as a :class:`Reference`; a malformed name is a ConfigError showing the form."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id, _, revision = str(text).removeprefix(PREFIX).partition("@")
    try:
        validate_repo_id(repo_id)
        if "/" not in repo_id:
            raise HFValidationError("it has no owner")
    except HFValidationError as error:
        raise ConfigError(f"{text!r} is not a Hub model name ({error}); write hf:OWNER/NAME or hf:OWNER/NAME@REVISION") from None
    if "@" in text and not revision:
        raise ConfigError(f"{text!r} names no revision after '@'; write hf:{repo_id}@BRANCH, @TAG or @COMMIT, or leave '@' out")
    return Reference(repo_id, revision or None)


def download(text: str) -> Path:
    """The local path of the model's ``model.safetensors``, fetched into the Hub cache unless already there."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    reference = parse(text)
    where = f"{reference} ({constants.ENDPOINT})"
    try:
        return Path(hf_hub_download(reference.repo_id, MODEL_FILE, revision=reference.revision))
    except GatedRepoError:
        raise DataError(f"{where} is gated: accept its conditions on its Hub page, then set HF_TOKEN or run `hf auth login`") from None
    except RepositoryNotFoundError:
        raise DataError(
            f"{where}: no such model repository, or it is private and no token gives access to it; check the name, "
            f"or set HF_TOKEN (or run `hf auth login`) for a private one"
        ) from None
    except RevisionNotFoundError:
        raise DataError(f"{where}: the repository has no revision {reference.revision!r}; name a branch, a tag or a commit it has") from None
    except RemoteEntryNotFoundError:
        raise DataError(
            f"{where} is not a p2p model: it holds no {MODEL_FILE}, but {_listing(reference)}; `p2p push` publishes p2p models"
        ) from None
    except LocalEntryNotFoundError:
        if constants.is_offline_mode():
            raise DataError(
                f"{where} is not in the Hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set; unset it to "
                f"download the model, or load it once while online"
            ) from None
        raise DataError(
            f"{where} could not be reached and is not in the Hub cache ({constants.HF_HUB_CACHE}); check the connection, "
            f"or HF_ENDPOINT for a mirror"
        ) from None
    except HfHubHTTPError as error:
        raise DataError(f"{where}: the Hub answered {first_line(error)}") from None
    except (HTTPError, OSError) as error:
        raise DataError(
            f"downloading {where} failed ({first_line(error)}); run the command again"
        ) from None


def _listing(reference: Reference) -> str:
    """What the repository holds, for the error that says it is not a p2p model."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, HTTPError

    try:
        siblings = HfApi().model_info(reference.repo_id, revision=reference.revision).siblings or []
    except (HfHubHTTPError, HTTPError, OSError) as error:
        return f"its file list could not be read ({first_line(error)})"
    names = sorted(sibling.rfilename for sibling in siblings)
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    return f"it holds {shown}" if names else "it holds no files"


def first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def pinned(ckpt: object, path: Path) -> str | None:
    """For ``--ckpt hf:...``, what to record as the model's source: ``hf:OWNER/NAME@COMMIT``, the commit its revision
    resolved to (the Hub cache keeps each file under ``snapshots/COMMIT/``); None for any other ``--ckpt``."""
    if not is_reference(ckpt):
        return None
    return str(Reference(parse(str(ckpt)).repo_id, Path(path).parent.name))
