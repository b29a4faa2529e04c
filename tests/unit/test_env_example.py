"""`.env.example` lists every setting (DESIGN.md, "Interfaces")."""

from __future__ import annotations

from pydantic import BaseModel

from services.common.settings import PROJECT_ROOT, Settings


def _variables(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += _variables(kind, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_in_env_example() -> None:
    text = (PROJECT_ROOT / ".env.example").read_text()
    missing = [v for v in _variables(Settings, "FRAUD_") if f"{v}=" not in text]
    assert not missing
