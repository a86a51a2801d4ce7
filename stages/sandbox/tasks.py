"""The sandbox's base tasks: open-ended instructions, each with topic words for keyword constraints.

Written for this project. Every task can take any constraint (none fixes a length or a format by itself), and
its topic words are words a good answer would plausibly use, so requiring or forbidding them is a real demand.
"""

from __future__ import annotations

from typing import NamedTuple


class Task(NamedTuple):
    instruction: str
    topic_words: tuple[str, ...]  # single lowercase words; keyword constraints draw from these


TASKS: tuple[Task, ...] = (
    Task("Explain how the gears on a bicycle make riding uphill easier.",
         ("chain", "pedal", "ratio", "hill", "speed", "cog")),
    Task("Describe what happens to water when it freezes.", ("ice", "temperature", "molecules", "expand", "crystal")),
    Task("Give advice to someone preparing for their first job interview.",
         ("research", "questions", "confidence", "employer", "practice")),
    Task("Explain why leaves change color in autumn.", ("chlorophyll", "pigment", "sunlight", "tree", "season")),
    Task("Describe how to make a simple cup of tea.", ("kettle", "water", "leaves", "steep", "milk", "cup")),
    Task("Explain what a budget is and why it helps with saving money.",
         ("income", "expenses", "savings", "plan", "spending")),
    Task("Describe a quiet morning in a small fishing village.", ("boats", "harbor", "nets", "gulls", "tide")),
    Task("Explain how vaccines help the body fight disease.",
         ("immune", "antibodies", "virus", "protection", "cells")),
    Task("Give tips for keeping a houseplant healthy.", ("light", "water", "soil", "pot", "leaves", "roots")),
    Task("Explain the difference between weather and climate.",
         ("temperature", "rain", "average", "decades", "forecast")),
    Task("Describe how a library organizes its books.", ("shelves", "catalog", "authors", "subject", "numbers")),
    Task("Explain why sleep matters for students.", ("memory", "rest", "focus", "brain", "hours")),
    Task("Write a short note welcoming a new neighbor to the street.",
         ("welcome", "street", "neighbor", "garden", "coffee")),
    Task("Explain how a refrigerator keeps food cold.", ("heat", "coolant", "compressor", "air", "temperature")),
    Task("Describe the life cycle of a butterfly.", ("egg", "caterpillar", "chrysalis", "wings", "leaf")),
    Task("Give advice on learning to play a musical instrument.",
         ("practice", "teacher", "scales", "patience", "songs")),
    Task("Explain why the moon appears to change shape during the month.",
         ("phases", "sunlight", "orbit", "earth", "crescent")),
    Task("Describe how to plan a picnic for a group of friends.", ("food", "blanket", "park", "weather", "drinks")),
    Task("Explain what recycling is and why it matters.", ("waste", "plastic", "paper", "landfill", "materials")),
    Task("Describe how a bill becomes a law in a typical democracy.",
         ("vote", "parliament", "draft", "debate", "approval")),
    Task("Give tips for writing a clear email at work.", ("subject", "reader", "purpose", "short", "reply")),
    Task("Explain how bees make honey.", ("nectar", "hive", "flowers", "wax", "workers")),
    Task("Describe what makes a good team captain.", ("players", "trust", "example", "listen", "decisions")),
    Task("Explain why exercise is good for the heart.", ("blood", "muscle", "pressure", "oxygen", "pulse")),
    Task("Describe the view from the top of a mountain at sunrise.", ("clouds", "valley", "light", "peaks", "wind")),
    Task("Explain how a compass helps people find their way.",
         ("needle", "north", "magnetic", "direction", "map")),
    Task("Give advice for someone starting to cook at home.", ("recipe", "knife", "ingredients", "pan", "heat")),
    Task("Explain what causes thunder and lightning.", ("storm", "electricity", "clouds", "sound", "charge")),
    Task("Describe how to care for a pet dog.", ("walks", "food", "vet", "training", "play")),
    Task("Explain why people learn a second language.", ("travel", "culture", "words", "grammar", "career")),
    Task("Describe a busy market on a weekend morning.", ("stalls", "fruit", "crowd", "prices", "vendors")),
    Task("Explain how solar panels produce electricity.", ("sunlight", "cells", "energy", "roof", "current")),
    Task("Give tips for staying focused while studying.", ("breaks", "phone", "goals", "notes", "quiet")),
    Task("Explain how a train stays on its tracks.", ("wheels", "rails", "flange", "cone", "curve")),
    Task("Describe what a good public park needs.", ("trees", "benches", "paths", "playground", "shade")),
    Task("Explain why the ocean is salty.", ("rivers", "minerals", "rocks", "evaporation", "salt")),
    Task("Give advice on saving energy at home.", ("lights", "heating", "insulation", "appliances", "bills")),
    Task("Explain how a seed grows into a plant.", ("roots", "water", "sprout", "soil", "sunlight")),
    Task("Describe how to prepare for a long hike.", ("boots", "map", "water", "layers", "trail")),
    Task("Explain what a museum curator does.", ("collection", "exhibits", "objects", "history", "visitors")),
    Task("Give tips for a good night of sleep.", ("bedtime", "screens", "dark", "routine", "caffeine")),
    Task("Explain how maps show hills and valleys.", ("contour", "lines", "height", "scale", "slope")),
    Task("Describe a thunderstorm from the point of view of a cat indoors.",
         ("window", "rain", "thunder", "blanket", "fur")),
    Task("Explain why bread rises when it bakes.", ("yeast", "dough", "gas", "oven", "flour")),
    Task("Give advice to a new volunteer at a food bank.", ("donations", "shifts", "boxes", "families", "kindness")),
)
