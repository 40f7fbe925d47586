from .eco_mask2former import EcoMask2Former

__all__ = ['EcoMask2Former']
