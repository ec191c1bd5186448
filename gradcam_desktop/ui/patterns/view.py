"""The Patterns dock's widget: what the model relies on for each class, as strategy clusters.

Top: progress, Cancel, Run Again, the class shown, Export Report…. Then the class's clusters as a
strip of cards (``clusterStrip``: each card the cluster's mean map over its most typical picture,
its size and mean inside share, the small far clusters flagged in red), beside a 2-D view of all
the class's maps (a pyqtgraph scatter, one colour a cluster; the pointer over a point shows that
picture in the preview). Below, the chosen cluster's pictures (``memberList``), nearest its centre
first. A click on a card lists its pictures; a click on a picture (or on a point) emits
``pictureChosen(path, class)``: the wiring opens it with its map.

The view only shows a ``PatternsFound`` (session/patterns_job.py); it computes nothing but colours.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from gradcam_desktop.ui.triage.thumbnails import ThumbnailCache

__all__ = ["CARD", "PatternsView", "cluster_colour"]

#: Pixels a side of a cluster card's picture.
CARD = 88
#: Pictures listed under a cluster at most (nearest the centre first): a list to click, not a dump.
MEMBERS_SHOWN = 500
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]
_FLAG = QColor("#fde2e1")


def cluster_colour(cluster: int) -> QColor:
    """The colour of ``cluster`` in the scatter and on its card's edge."""
    return QColor(_PALETTE[cluster % len(_PALETTE)])


class PatternsView(QWidget):
    """Clusters of one class at a time; signals what the user asks for."""

    cancelRequested = Signal()
    rerunRequested = Signal()
    reportRequested = Signal()
    pictureChosen = Signal(str, int)  # path, the class its map explains

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._found: Any = None
        self._class: int | None = None
        self._cluster: int | None = None
        self._points: list[int] = []  # scatter point → index into analysis.done
        self.thumbs = ThumbnailCache(side=CARD, parent=self)
        self.thumbs.ready.connect(self._thumb_ready)
        self.progress = QProgressBar(self)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.rerun_button = QPushButton("Run Again", self)
        self.rerun_button.setToolTip("Find the patterns of the same folder again, with the model and method open now")
        self.rerun_button.setEnabled(False)
        self.rerun_button.clicked.connect(self.rerunRequested)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.class_box = QComboBox(self)
        self.class_box.setObjectName("patternsClass")
        self.class_box.setToolTip("The class whose maps are clustered")
        self.class_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.class_box.currentIndexChanged.connect(self._class_chosen)
        self.report_button = QPushButton("Export Report…", self)
        self.report_button.setToolTip("One HTML page to share: accuracy, confusion matrix, these clusters, the mistakes")
        self.report_button.clicked.connect(self.reportRequested)
        self.strip = QListWidget(self)
        self.strip.setObjectName("clusterStrip")
        self.strip.setViewMode(QListView.ViewMode.IconMode)
        self.strip.setFlow(QListView.Flow.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setMovement(QListView.Movement.Static)
        self.strip.setIconSize(QSize(CARD, CARD))
        self.strip.setGridSize(QSize(CARD + 40, CARD + 58))
        self.strip.setWordWrap(True)
        self.strip.setFixedHeight(CARD + 66)  # one row of cards; the pictures' list gets the rest
        self.strip.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.strip.itemClicked.connect(self._card_clicked)
        self.plot = pg.PlotWidget(self)
        self.plot.setObjectName("patternsScatter")
        self.plot.setBackground("w")
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.plot.setMinimumSize(180, 140)
        self.plot.setToolTip("Every map of the class, placed so that similar maps lie close (t-SNE); "
                             "one colour a cluster. Point at a dot to see its picture, click to open it.")
        self.scatter = pg.ScatterPlotItem(size=9, hoverable=True, hoverSize=13, tip=None)
        self.plot.addItem(self.scatter)
        self.scatter.sigClicked.connect(self._point_clicked)
        self.scatter.sigHovered.connect(self._point_hovered)
        self.members = QListWidget(self)
        self.members.setObjectName("memberList")
        self.members.setIconSize(QSize(40, 40))
        self.members.setUniformItemSizes(True)
        self.members.itemClicked.connect(self._member_clicked)
        self.members_title = QLabel("Click a cluster to list its pictures.", self)
        self.preview = QLabel(self)
        self.preview.setObjectName("patternsPreview")
        self.preview.setFixedWidth(CARD + 16)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
        self.preview.setWordWrap(True)
        self._lay_out()

    def _lay_out(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.progress, 2)
        top.addWidget(self.cancel_button)
        top.addWidget(self.rerun_button)
        top.addWidget(self.status, 3)
        top.addWidget(QLabel("Class:", self))
        top.addWidget(self.class_box)
        top.addWidget(self.report_button)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.strip)
        left_layout.addWidget(self.members_title)
        left_layout.addWidget(self.members, 1)
        right = QWidget(self)
        right_layout = QHBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.plot, 1)
        right_layout.addWidget(self.preview)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([620, 380])
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)

    # -- running --------------------------------------------------------------------------------
    def start(self, text: str) -> None:
        """A new run: nothing shown, progress from 0, Cancel on."""
        self._found = None
        self._class = self._cluster = None
        self.thumbs.clear()
        self.class_box.blockSignals(True)
        self.class_box.clear()
        self.class_box.blockSignals(False)
        self.strip.clear()
        self.members.clear()
        self.scatter.clear()
        self.preview.clear()
        self.members_title.setText("Click a cluster to list its pictures.")
        self.progress.setRange(0, 0)
        self.cancel_button.setEnabled(True)
        self.rerun_button.setEnabled(False)
        self.report_button.setEnabled(False)
        self.set_status(text)

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, max(total, 1)))
        self.progress.setFormat(f"{done} / {total}")

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def finish(self, cancelled: bool, message: str = "") -> None:
        """The run ended: Cancel off, Run Again on; ``message`` (a failure) or a note when cancelled."""
        self.cancel_button.setEnabled(False)
        self.rerun_button.setEnabled(True)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        if message:
            self.set_status(message)
        elif cancelled:
            self.set_status("Cancelled: nothing was clustered (a part of the folder could show a pattern that is "
                            "not there). Run Again to finish it.")

    def clear_for_model(self, note: str) -> None:
        self.start(note)
        self.finish(False)
        self.set_status(note)

    # -- content ---------------------------------------------------------------------------------
    def show_found(self, found: Any) -> None:
        """Show a ``PatternsFound``: the class box lists the classes with maps, the first with a flagged
        cluster (else the largest) is shown."""
        self._found = found
        analysis = found.analysis
        self.report_button.setEnabled(True)
        classes = sorted(analysis.clusterings)
        self.class_box.blockSignals(True)
        self.class_box.clear()
        for c in classes:
            clustering = analysis.clusterings[c]
            flagged = " ⚑" if clustering.outlier_clusters else ""
            self.class_box.addItem(f"{_name(analysis.names, c)} — {clustering.count} cluster"
                                   f"{'s' if clustering.count != 1 else ''}{flagged}", c)
        self.class_box.blockSignals(False)
        mapped, flagged_classes = len(analysis.done), [c for c in classes if analysis.clusterings[c].outlier_clusters]
        by = "labelled" if analysis.by == "true" else "predicted"
        text = (f"{mapped} picture{'s' if mapped != 1 else ''} mapped with {analysis.method.title} "
                f"(maps of the {by} class), {len(classes)} class{'es' if len(classes) != 1 else ''}")
        if analysis.skipped:
            text += f", {analysis.skipped} skipped"
        text += (f". Small clusters far from the rest in {', '.join(_name(analysis.names, c) for c in flagged_classes)}"
                 ": look at them first." if flagged_classes else ". No small far cluster.")
        self.set_status(text)
        if classes:
            first = flagged_classes[0] if flagged_classes else max(classes, key=lambda c: len(analysis.class_rows(c)))
            self.class_box.setCurrentIndex(classes.index(first))
            self.show_class(first)

    def found(self) -> Any:
        return self._found

    def shown_class(self) -> int | None:
        return self._class

    def chosen_cluster(self) -> int | None:
        return self._cluster

    def show_class(self, class_index: int) -> None:
        """The cards and the scatter of ``class_index``'s clusters."""
        analysis = self._found.analysis
        self._class, self._cluster = class_index, None
        clustering = analysis.clusterings[class_index]
        rows = analysis.class_rows(class_index)
        self.strip.clear()
        self.members.clear()
        self.members_title.setText("Click a cluster to list its pictures.")
        for cluster in range(clustering.count):
            item = QListWidgetItem(self._card_icon(class_index, cluster), self._card_text(class_index, cluster))
            item.setData(Qt.ItemDataRole.UserRole, cluster)
            item.setSizeHint(QSize(CARD + 36, CARD + 54))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            if cluster in clustering.outlier_clusters:
                item.setBackground(QBrush(_FLAG))
                item.setToolTip("Small and far from the other clusters: the pictures where the model may use "
                                "another cue than the object (a shortcut). Look at them.")
            else:
                item.setToolTip(f"{int(clustering.sizes[cluster])} pictures whose maps look alike")
            self.strip.addItem(item)
        spots = []
        self._points = rows.tolist()
        for position, done_index in enumerate(self._points):
            cluster = int(clustering.labels[position])
            x, y = (float(v) for v in clustering.embedding_2d[position])
            spots.append({"pos": (x, y), "brush": pg.mkBrush(cluster_colour(cluster)), "data": done_index,
                          "pen": pg.mkPen("#c00000" if cluster in clustering.outlier_clusters else "w", width=1.2)})
        self.scatter.setData(spots)
        self.plot.autoRange()

    def choose_cluster(self, cluster: int) -> None:
        """List ``cluster``'s pictures (nearest its centre first) and mark its points."""
        analysis = self._found.analysis
        clustering = analysis.clusterings[self._class]
        rows = analysis.class_rows(self._class)
        self._cluster = cluster
        members = clustering.members(cluster)
        members = members[np.argsort(clustering.distances[members], kind="stable")]
        self.members.clear()
        for position in members[:MEMBERS_SHOWN].tolist():
            item_index = int(rows[position])
            item = analysis.done[item_index]
            share = "" if math.isnan(item.share) else f" · inside share {item.share:.0%}"
            # The distance to the centre only means something when there is more than one cluster.
            distance = f" · distance {float(clustering.distances[position]):.3f}" if clustering.count > 1 else ""
            entry = QListWidgetItem(f"{Path(item.image).name}{distance}{share}")
            entry.setData(Qt.ItemDataRole.UserRole, item_index)
            entry.setToolTip(item.image)
            thumb = self.thumbs.get(item.image)
            if thumb is not None:
                entry.setIcon(QIcon(thumb))
            self.members.addItem(entry)
        shown = len(members)
        more = f" (the {MEMBERS_SHOWN} nearest shown)" if shown > MEMBERS_SHOWN else ""
        self.members_title.setText(f"Cluster {cluster}: {shown} picture{'s' if shown != 1 else ''}, nearest its "
                                   f"centre first{more}. Click one to open it with its map.")
        for index in range(self.strip.count()):
            item = self.strip.item(index)
            item.setSelected(item.data(Qt.ItemDataRole.UserRole) == cluster)
        sizes = [13 if int(clustering.labels[p]) == cluster else 7 for p in range(len(rows))]
        self.scatter.setSize(sizes)

    # -- cards -----------------------------------------------------------------------------------
    def _typical(self, class_index: int, cluster: int) -> str | None:
        analysis = self._found.analysis
        clustering = analysis.clusterings[class_index]
        members = clustering.members(cluster)
        if not len(members):
            return None
        nearest = int(members[np.argmin(clustering.distances[members])])
        return str(analysis.done[int(analysis.class_rows(class_index)[nearest])].image)

    def _card_icon(self, class_index: int, cluster: int) -> QIcon:
        """The cluster's mean map over its most typical picture (over grey until that picture's thumbnail is made)."""
        from gradcam_desktop.core import overlay

        path = self._typical(class_index, cluster)
        thumb = self.thumbs.get(path) if path else None
        base = np.full((CARD, CARD, 3), 128, np.uint8)
        if thumb is not None and not thumb.isNull() and thumb.width() > 1:
            base = _pixmap_rgb(thumb.scaled(CARD, CARD, Qt.AspectRatioMode.IgnoreAspectRatio,
                                            Qt.TransformationMode.SmoothTransformation))
        grid = self._found.means[(class_index, cluster)]
        display, _flat = overlay.display_map(np.asarray(grid, np.float32), (CARD, CARD))
        rgb = np.ascontiguousarray(overlay.blend(base, display, 0.55))
        image = QImage(rgb.data, CARD, CARD, 3 * CARD, QImage.Format.Format_RGB888).copy()
        pixmap = QPixmap.fromImage(image)
        painter = QPainter(pixmap)
        painter.setPen(pg.mkPen(cluster_colour(cluster), width=6))
        painter.drawRect(0, 0, CARD - 1, CARD - 1)
        painter.end()
        return QIcon(pixmap)

    def _card_text(self, class_index: int, cluster: int) -> str:
        analysis = self._found.analysis
        size = int(analysis.clusterings[class_index].sizes[cluster])
        share = next((row.mean_inside_share for row in analysis.cluster_rows
                      if row.class_index == class_index and row.cluster == cluster), math.nan)
        flag = "\n⚑ small and far" if cluster in analysis.clusterings[class_index].outlier_clusters else ""
        inside = "" if math.isnan(share) else f"\ninside {share:.0%}"
        return f"Cluster {cluster} · {size}{inside}{flag}"

    def _thumb_ready(self, path: str) -> None:
        if self._found is None or self._class is None:
            return
        clustering = self._found.analysis.clusterings[self._class]
        for cluster in range(clustering.count):
            if self._typical(self._class, cluster) == path and cluster < self.strip.count():
                self.strip.item(cluster).setIcon(self._card_icon(self._class, cluster))
        for index in range(self.members.count()):
            item = self.members.item(index)
            if item.toolTip() == path:
                thumb = self.thumbs.get(path)
                if thumb is not None:
                    item.setIcon(QIcon(thumb))
        if self.preview.property("path") == path:
            self._preview(path)

    # -- clicks ----------------------------------------------------------------------------------
    def _class_chosen(self, index: int) -> None:
        if self._found is not None and index >= 0:
            self.show_class(int(self.class_box.itemData(index)))

    def _card_clicked(self, item: QListWidgetItem) -> None:
        self.choose_cluster(int(item.data(Qt.ItemDataRole.UserRole)))

    def _member_clicked(self, item: QListWidgetItem) -> None:
        self._open(int(item.data(Qt.ItemDataRole.UserRole)))

    def _point_clicked(self, _item: Any, points: Any, *_rest: Any) -> None:
        if len(points):
            self._open(int(points[0].data()))

    def _point_hovered(self, _item: Any, points: Any, *_rest: Any) -> None:
        if len(points):
            self._preview(self._found.analysis.done[int(points[0].data())].image)

    def _preview(self, path: str) -> None:
        self.preview.setProperty("path", path)
        thumb = self.thumbs.get(path)
        if thumb is not None:
            self.preview.setPixmap(thumb)
        else:
            self.preview.setText(Path(path).name)
        self.preview.setToolTip(path)

    def _open(self, done_index: int) -> None:
        item = self._found.analysis.done[done_index]
        self.pictureChosen.emit(item.image, int(item.class_index))


def _name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def _pixmap_rgb(pixmap: QPixmap) -> np.ndarray:
    image = pixmap.toImage().convertToFormat(QImage.Format.Format_RGB888)
    width, height, line = image.width(), image.height(), image.bytesPerLine()
    data = np.frombuffer(image.constBits(), np.uint8, line * height).reshape(height, line)
    # A copy, always: when the lines have no padding the slice is the QImage's own buffer, freed on return.
    return data[:, :3 * width].reshape(height, width, 3).copy()
