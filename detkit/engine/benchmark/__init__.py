"""Speed, memory, arithmetic and accuracy of detectors, side by side (``detkit benchmark``).

``runner`` measures one model; ``models`` builds what is measured; ``report`` holds the results;
``charts`` draws them; ``torchvision_compare`` times detkit against torchvision's equivalent.
"""
