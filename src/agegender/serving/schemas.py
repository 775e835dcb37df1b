"""Shapes of the API's answers, for the OpenAPI document (routes return plain JSON)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Face(BaseModel):
    """One face: the same fields, names and nesting as a row of `agegender predict`'s JSON
    (docs/output-schema.md)."""

    face: int = Field(description="the face's number in its image, from 0, largest first")
    box: list[int] = Field(description="x, y, width, height in image pixels, within the image")
    det_score: float | None = Field(description="detector confidence (0–1)")
    landmarks: list[list[float]] | None = Field(
        description="5 points (x, y) in image pixels: the eyes, the nose tip and the mouth "
                    "corners, left to right as they appear")
    age: float
    age_low: float | None = Field(description="lower end of the 80 % interval")
    age_high: float | None = Field(description="upper end of the 80 % interval")
    gender: str = Field(description="female or male")
    gender_prob: float = Field(description="probability of the stated gender")


class Prediction(BaseModel):
    width: int
    height: int
    faces: list[Face]
    annotated_image: str | None = Field(
        None, description="with annotate=true: the image with boxes and labels, a PNG data URL")


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class BatchEntry(BaseModel):
    file: str
    width: int | None = None
    height: int | None = None
    faces: list[Face] | None = None
    error: ErrorDetail | None = None


class BatchPrediction(BaseModel):
    results: list[BatchEntry]
